// Block decode glue: BlockDecoder, whose jobs decode a block (blockfile.cc: read, AES-256-GCM
// open, zstd, id check) on the libuv pool, from its file(s), shards rebuilt on the way, or bytes.
#include <algorithm>
#include <cstdlib>

#include "blockfile.h"
#include "glue.h"
#include "writefile.h"

namespace isg {
namespace glue {
namespace {

// parts [{file, offset?, length?} | {rebuild: {k, m, shard, sources: [{shard, file, offset}]}, length}].
std::vector<isg::FilePart> partsOf(const Napi::Value& v) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() == 0) throw Napi::TypeError::New(v.Env(), "parts must be a non-empty array");
  auto a = v.As<Napi::Array>();
  std::vector<isg::FilePart> parts;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a[i];
    if (!e.IsObject()) throw Napi::TypeError::New(v.Env(), "a part must be an object");
    auto o = e.As<Napi::Object>();
    Napi::Value file = o.Get("file");
    isg::FilePart p;
    if (file.IsString()) p.path = file.As<Napi::String>().Utf8Value();
    Napi::Value rebuild = o.Get("rebuild");
    if (rebuild.IsObject()) {
      // {rebuild: {k, m, shard, sources: [{shard, file, offset}]}, length}
      auto rb = rebuild.As<Napi::Object>();
      p.rebuildK = static_cast<int>(intValue(rb.Get("k"), "rebuild.k"));
      p.rebuildM = static_cast<int>(intValue(rb.Get("m"), "rebuild.m"));
      const int n = p.rebuildK + p.rebuildM;
      if (p.rebuildK < 1 || p.rebuildM < 1 || n > 255) throw Napi::RangeError::New(v.Env(), "rebuild: need k >= 1, m >= 1, k + m <= 255");
      int64_t target = intValue(rb.Get("shard"), "rebuild.shard");
      if (target >= n) throw Napi::RangeError::New(v.Env(), "rebuild.shard out of range");
      p.target = static_cast<uint8_t>(target);
      Napi::Value sv = rb.Get("sources");
      if (!sv.IsArray() || sv.As<Napi::Array>().Length() != static_cast<uint32_t>(p.rebuildK))
        throw Napi::RangeError::New(v.Env(), "rebuild.sources must list k shards");
      auto sa = sv.As<Napi::Array>();
      Napi::Array idx = Napi::Array::New(v.Env());
      for (uint32_t j = 0; j < sa.Length(); j++) {
        Napi::Value sj = sa[j];
        if (!sj.IsObject() || !sj.As<Napi::Object>().Get("file").IsString()) throw Napi::TypeError::New(v.Env(), "a rebuild source needs a file");
        auto so = sj.As<Napi::Object>();
        idx.Set(j, so.Get("shard"));
        p.srcPath.push_back(so.Get("file").As<Napi::String>().Utf8Value());
        p.srcOffset.push_back(intValue(so.Get("offset"), "source.offset"));
      }
      p.srcIdx = indexList(idx, n, "rebuild.sources");
      if (std::find(p.srcIdx.begin(), p.srcIdx.end(), p.target) != p.srcIdx.end())
        throw Napi::RangeError::New(v.Env(), "rebuild.shard is among its sources");
      p.length = intValue(o.Get("length"), "part.length");
    } else {
      if (!file.IsString()) throw Napi::TypeError::New(v.Env(), "part.file must be a string");
      if (!o.Get("length").IsUndefined()) {
        p.offset = intValue(o.Get("offset"), "part.offset");
        p.length = intValue(o.Get("length"), "part.length");
      }
    }
    parts.push_back(std::move(p));
  }
  return parts;
}

// Damage to a block, as the decoders report it: code 'EIO', corrupt: true.
Napi::Error corruptError(Napi::Env env, const char* reason) {
  auto e = Napi::Error::New(env, reason);
  e.Set("code", "EIO");
  e.Set("corrupt", Napi::Boolean::New(env, true));
  return e;
}

// A block decoded on the libuv pool (blockfile.cc), from its file(s) or from bytes in memory;
// the plaintext is handed to JS in the memory it was decoded into.
class DecodeWorker : public Napi::AsyncWorker {
 public:
  // From files.
  DecodeWorker(Napi::Env env, const isg::BlockKeys& keys, bool zstd, const uint8_t* id, std::vector<isg::FilePart> parts)
      : DecodeWorker(env, keys, zstd, id) {
    parts_ = std::move(parts);
  }
  // From bytes, which `keep` holds until the job is done.
  DecodeWorker(Napi::Env env, const isg::BlockKeys& keys, bool zstd, const uint8_t* id, uint8_t* bytes, size_t len, Napi::Object keep)
      : DecodeWorker(env, keys, zstd, id) {
    fromBytes_ = true;
    bytes_ = bytes;
    len_ = len;
    keep_ = Napi::Persistent(keep);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    r_ = fromBytes_ ? isg::decodeBlockBytes(keys_, zstd_, bytes_, len_, id_, false) : isg::decodeBlockFile(keys_, zstd_, parts_, id_);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (r_.err != 0) return deferred_.Reject(fsError(env, r_.err, r_.syscall, r_.errPath).Value());
    if (r_.corrupt != nullptr) {
      return deferred_.Reject(corruptError(env, r_.corrupt).Value());
    }
    void* owner = r_.owner;
    r_.owner = nullptr;
    if (r_.len == 0) {
      std::free(owner);
      return deferred_.Resolve(Napi::Buffer<uint8_t>::New(env, 0));
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::New(env, r_.data, r_.len, [](Napi::Env, uint8_t*, void* o) { std::free(o); }, owner));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  ~DecodeWorker() override { std::free(r_.owner); }

 private:
  DecodeWorker(Napi::Env env, const isg::BlockKeys& keys, bool zstd, const uint8_t* id)
      : Napi::AsyncWorker(env, "isgfs:decode"), deferred_(Napi::Promise::Deferred::New(env)), keys_(keys), zstd_(zstd) {
    std::memcpy(id_, id, 32);
  }
  Napi::Promise::Deferred deferred_;
  isg::BlockKeys keys_;
  bool zstd_;
  uint8_t id_[32];
  std::vector<isg::FilePart> parts_;
  bool fromBytes_ = false;
  uint8_t* bytes_ = nullptr;
  size_t len_ = 0;
  Napi::ObjectReference keep_;
  isg::DecodedBlock r_;
};

// Small restored files, many in one trip to the libuv pool (BlockDecoder.writeFiles): each file's
// blocks decoded from their files, then the file written with its attributes
// (writeRestoredFile). Each file has its own outcome: one that fails does not stop the others.
class WriteFilesWorker : public Napi::AsyncWorker {
 public:
  struct Extent {
    uint8_t id[32];
    std::vector<isg::FilePart> parts;
    int64_t offset, length;
  };
  struct File {
    RestoredFile file;
    std::vector<Extent> extents;
    int err = 0;
    const char* syscall = "";
    std::string errPath;
    std::string corrupt;
  };
  WriteFilesWorker(Napi::Env env, const isg::BlockKeys& keys, bool zstd)
      : Napi::AsyncWorker(env, "isgfs:writeFiles"), deferred_(Napi::Promise::Deferred::New(env)), keys_(keys), zstd_(zstd) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    for (File& f : files) {
      std::vector<void*> owners;
      for (const Extent& x : f.extents) {
        isg::DecodedBlock r = isg::decodeBlockFile(keys_, zstd_, x.parts, x.id);
        owners.push_back(r.owner);
        r.owner = nullptr;
        if (r.err != 0) {
          f.err = r.err, f.syscall = r.syscall, f.errPath = r.errPath;
          break;
        }
        if (r.corrupt != nullptr || r.len < static_cast<size_t>(x.length)) {
          f.corrupt = r.corrupt != nullptr ? r.corrupt : "a block shorter than its extent";
          break;
        }
        f.file.writes.push_back({r.data, static_cast<size_t>(x.length), x.offset});
      }
      if (f.err == 0 && f.corrupt.empty()) {
        f.err = writeRestoredFile(f.file, &f.syscall);
        f.errPath = f.file.path;
      }
      f.file.writes.clear();
      for (void* o : owners) std::free(o);
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    auto out = Napi::Array::New(env, files.size());
    for (uint32_t i = 0; i < files.size(); i++) {
      const File& f = files[i];
      if (!f.corrupt.empty()) {
        out.Set(i, corruptError(env, f.corrupt.c_str()).Value());
      } else if (f.err != 0) {
        out.Set(i, fsError(env, f.err, f.syscall, f.errPath).Value());
      } else {
        out.Set(i, env.Null());
      }
    }
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  std::vector<File> files;

 private:
  Napi::Promise::Deferred deferred_;
  isg::BlockKeys keys_;
  bool zstd_;
};

// Blocks decoded from their files, many in one trip to the libuv pool (BlockDecoder.decodeFiles):
// each its own outcome, the plaintext or its error.
class DecodeFilesWorker : public Napi::AsyncWorker {
 public:
  struct Item {
    uint8_t id[32];
    std::vector<isg::FilePart> parts;
    isg::DecodedBlock r;
  };
  DecodeFilesWorker(Napi::Env env, const isg::BlockKeys& keys, bool zstd)
      : Napi::AsyncWorker(env, "isgfs:decodeFiles"), deferred_(Napi::Promise::Deferred::New(env)), keys_(keys), zstd_(zstd) {}
  ~DecodeFilesWorker() override {
    for (Item& i : items) std::free(i.r.owner);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    for (Item& i : items) i.r = isg::decodeBlockFile(keys_, zstd_, i.parts, i.id);
  }
  void OnOK() override {
    Napi::Env env = Env();
    auto out = Napi::Array::New(env, items.size());
    for (uint32_t n = 0; n < items.size(); n++) {
      isg::DecodedBlock& r = items[n].r;
      if (r.err != 0) {
        out.Set(n, fsError(env, r.err, r.syscall, r.errPath).Value());
      } else if (r.corrupt != nullptr) {
        out.Set(n, corruptError(env, r.corrupt).Value());
      } else {
        void* owner = r.owner;
        r.owner = nullptr;
        if (r.len == 0) {
          std::free(owner);
          out.Set(n, Napi::Buffer<uint8_t>::New(env, 0));
        } else {
          out.Set(n, Napi::Buffer<uint8_t>::New(env, r.data, r.len, [](Napi::Env, uint8_t*, void* o) { std::free(o); }, owner));
        }
      }
    }
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  std::vector<Item> items;

 private:
  Napi::Promise::Deferred deferred_;
  isg::BlockKeys keys_;
  bool zstd_;
};

// new BlockDecoder(idKey[32], encKey[32], compression 'zstd' | 'none');
// decoder.decodeFile(id[32], parts) -> Promise<Buffer>: parts [{file, offset, length}] hold the
// encoded block one after the other; a part without offset and length is its whole file, and a
// part {rebuild: {k, m, shard, sources: [{shard, file, offset}]}, length} is rebuilt from k others.
// decoder.decode(id[32], encoded) -> Promise<Buffer>: the same from bytes (only read).
class BlockDecoder : public Napi::ObjectWrap<BlockDecoder> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "BlockDecoder",
                       {InstanceMethod("decodeFile", &BlockDecoder::DecodeFile), InstanceMethod("decode", &BlockDecoder::Decode),
                        InstanceMethod("writeFiles", &BlockDecoder::WriteFiles), InstanceMethod("decodeFiles", &BlockDecoder::DecodeFiles)});
  }
  explicit BlockDecoder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BlockDecoder>(info) {
    std::memcpy(keys_.idKey, fixedBytes(info[0], 32, "idKey"), 32);
    std::memcpy(keys_.encKey, fixedBytes(info[1], 32, "encKey"), 32);
    if (!info[2].IsString()) throw Napi::TypeError::New(info.Env(), "compression must be a string");
    std::string c = info[2].As<Napi::String>().Utf8Value();
    if (c != "zstd" && c != "none") throw Napi::RangeError::New(info.Env(), "compression must be 'zstd' or 'none'");
    zstd_ = c == "zstd";
  }

 private:
  Napi::Value DecodeFile(const Napi::CallbackInfo& info) {
    const uint8_t* id = fixedBytes(info[0], 32, "id");
    std::vector<isg::FilePart> parts = partsOf(info[1]);
    return queue(new DecodeWorker(info.Env(), keys_, zstd_, id, std::move(parts)));
  }
  // writeFiles([{path, extents: [{id, parts, offset, length}], size, mode, uid?, gid?, xattrs?,
  // atimeNs?, mtimeNs?}]) -> Promise<(null | Error)[]>: each file made anew from its decoded blocks.
  Napi::Value WriteFiles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "writeFiles(files: object[])");
    auto a = info[0].As<Napi::Array>();
    auto* w = new WriteFilesWorker(env, keys_, zstd_);
    try {
      w->files.resize(a.Length());
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value v = a[i];
        if (!v.IsObject() || !v.As<Napi::Object>().Get("path").IsString() || !v.As<Napi::Object>().Get("extents").IsArray())
          throw Napi::TypeError::New(env, "a file must be {path, extents, ...attrs}");
        auto o = v.As<Napi::Object>();
        WriteFilesWorker::File& f = w->files[i];
        f.file.path = o.Get("path").As<Napi::String>().Utf8Value();
        parseFileAttrs(o, &f.file);
        auto xs = o.Get("extents").As<Napi::Array>();
        for (uint32_t j = 0; j < xs.Length(); j++) {
          Napi::Value xv = xs[j];
          if (!xv.IsObject()) throw Napi::TypeError::New(env, "an extent must be {id, parts, offset, length}");
          auto xo = xv.As<Napi::Object>();
          WriteFilesWorker::Extent x;
          std::memcpy(x.id, fixedBytes(xo.Get("id"), 32, "extent.id"), 32);
          x.parts = partsOf(xo.Get("parts"));
          x.offset = intValue(xo.Get("offset"), "extent.offset");
          x.length = intValue(xo.Get("length"), "extent.length");
          f.extents.push_back(std::move(x));
        }
      }
    } catch (...) {
      delete w;
      throw;
    }
    return queue(w);
  }
  // decodeFiles([{id, parts}]) -> Promise<(Buffer | Error)[]>: decodeFile of each, in one job.
  Napi::Value DecodeFiles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "decodeFiles(blocks: {id, parts}[])");
    auto a = info[0].As<Napi::Array>();
    auto* w = new DecodeFilesWorker(env, keys_, zstd_);
    try {
      w->items.resize(a.Length());
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value v = a[i];
        if (!v.IsObject()) throw Napi::TypeError::New(env, "a block must be {id, parts}");
        auto o = v.As<Napi::Object>();
        std::memcpy(w->items[i].id, fixedBytes(o.Get("id"), 32, "id"), 32);
        w->items[i].parts = partsOf(o.Get("parts"));
      }
    } catch (...) {
      delete w;
      throw;
    }
    return queue(w);
  }
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    const uint8_t* id = fixedBytes(info[0], 32, "id");
    size_t len;
    uint8_t* bytes = bytesOf(info[1], &len, "encoded");
    auto keep = Napi::Object::New(info.Env());
    keep.Set("encoded", info[1]);
    return queue(new DecodeWorker(info.Env(), keys_, zstd_, id, bytes, len, keep));
  }
  isg::BlockKeys keys_;
  bool zstd_ = false;
};

}  // namespace

// Called only when isg::aeadAvailable() (blocks are sealed with AES-256-GCM).
void registerBlockfile(Napi::Env env, Napi::Object exports) { exports.Set("BlockDecoder", BlockDecoder::Init(env)); }

}  // namespace glue
}  // namespace isg

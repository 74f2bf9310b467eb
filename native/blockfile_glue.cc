// Block decode glue: BlockDecoder, whose jobs decode a block (blockfile.cc: read, AES-256-GCM
// open, zstd, id check) on the libuv pool, from its file(s), shards rebuilt on the way, or bytes.
#include <algorithm>
#include <cstdlib>

#include "blockfile.h"
#include "glue.h"

namespace isg {
namespace glue {
namespace {

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
      auto e = Napi::Error::New(env, r_.corrupt);
      e.Set("code", "EIO");
      e.Set("corrupt", Napi::Boolean::New(env, true));
      return deferred_.Reject(e.Value());
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

// new BlockDecoder(idKey[32], encKey[32], compression 'zstd' | 'none');
// decoder.decodeFile(id[32], parts) -> Promise<Buffer>: parts [{file, offset, length}] hold the
// encoded block one after the other; a part without offset and length is its whole file, and a
// part {rebuild: {k, m, shard, sources: [{shard, file, offset}]}, length} is rebuilt from k others.
// decoder.decode(id[32], encoded) -> Promise<Buffer>: the same from bytes (only read).
class BlockDecoder : public Napi::ObjectWrap<BlockDecoder> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "BlockDecoder",
                       {InstanceMethod("decodeFile", &BlockDecoder::DecodeFile), InstanceMethod("decode", &BlockDecoder::Decode)});
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
    if (!info[1].IsArray() || info[1].As<Napi::Array>().Length() == 0)
      throw Napi::TypeError::New(info.Env(), "parts must be a non-empty array");
    auto a = info[1].As<Napi::Array>();
    std::vector<isg::FilePart> parts;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a[i];
      if (!e.IsObject()) throw Napi::TypeError::New(info.Env(), "a part must be an object");
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
        if (p.rebuildK < 1 || p.rebuildM < 1 || n > 255) throw Napi::RangeError::New(info.Env(), "rebuild: need k >= 1, m >= 1, k + m <= 255");
        int64_t target = intValue(rb.Get("shard"), "rebuild.shard");
        if (target >= n) throw Napi::RangeError::New(info.Env(), "rebuild.shard out of range");
        p.target = static_cast<uint8_t>(target);
        Napi::Value sv = rb.Get("sources");
        if (!sv.IsArray() || sv.As<Napi::Array>().Length() != static_cast<uint32_t>(p.rebuildK))
          throw Napi::RangeError::New(info.Env(), "rebuild.sources must list k shards");
        auto sa = sv.As<Napi::Array>();
        Napi::Array idx = Napi::Array::New(info.Env());
        for (uint32_t j = 0; j < sa.Length(); j++) {
          Napi::Value sj = sa[j];
          if (!sj.IsObject() || !sj.As<Napi::Object>().Get("file").IsString()) throw Napi::TypeError::New(info.Env(), "a rebuild source needs a file");
          auto so = sj.As<Napi::Object>();
          idx.Set(j, so.Get("shard"));
          p.srcPath.push_back(so.Get("file").As<Napi::String>().Utf8Value());
          p.srcOffset.push_back(intValue(so.Get("offset"), "source.offset"));
        }
        p.srcIdx = indexList(idx, n, "rebuild.sources");
        if (std::find(p.srcIdx.begin(), p.srcIdx.end(), p.target) != p.srcIdx.end())
          throw Napi::RangeError::New(info.Env(), "rebuild.shard is among its sources");
        p.length = intValue(o.Get("length"), "part.length");
      } else {
        if (!file.IsString()) throw Napi::TypeError::New(info.Env(), "part.file must be a string");
        if (!o.Get("length").IsUndefined()) {
          p.offset = intValue(o.Get("offset"), "part.offset");
          p.length = intValue(o.Get("length"), "part.length");
        }
      }
      parts.push_back(std::move(p));
    }
    return queue(new DecodeWorker(info.Env(), keys_, zstd_, id, std::move(parts)));
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

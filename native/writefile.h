// A restored file written with its attributes in one go (writefile_glue.cc): used by
// writeFileAttrs and by BlockDecoder.writeFiles (blockfile_glue.cc), on the libuv pool.
#pragma once
#include <time.h>

#include "glue.h"

namespace isg {
namespace glue {

struct FileWrite {
  const uint8_t* data;
  size_t len;
  int64_t offset;
};

struct RestoredFile {
  std::string path;
  std::vector<FileWrite> writes;
  int64_t size = 0;
  int64_t uid = -1, gid = -1;  // fchown when uid >= 0
  int mode = 0600;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> xattrs;
  bool times = false;  // futimens last, when set
  struct timespec ts[2] = {};
};

// {size, mode, uid?, gid?, xattrs?: [{name, value}], atimeNs?, mtimeNs?} into f; throws on a bad one.
void parseFileAttrs(const Napi::Object& o, RestoredFile* f);

// open (O_CREAT | O_TRUNC | O_NOFOLLOW), pwrite, ftruncate, fchown, fchmod, fsetxattr, futimens,
// close: 0, or an errno with *syscall naming the call that failed.
int writeRestoredFile(const RestoredFile& f, const char** syscall);

}  // namespace glue
}  // namespace isg

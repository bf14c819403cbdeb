// ImageGuest: how an image file is mapped, and that sending never changes it.
#include "ramshift/guest/image.h"

#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace ramshift::guest {
namespace {

// A 1 MiB image of a known pattern, removed when the test ends.
class ImageFile {
 public:
  explicit ImageFile(const std::string& dir) {
    path_ = dir + "/ramshift-image-test-" + std::to_string(::getpid()) + ".img";
    bytes_.resize(1 << 20);
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = static_cast<char>(i * 7 + i / 4096);
    std::ofstream(path_, std::ios::binary).write(bytes_.data(), static_cast<long>(bytes_.size()));
  }
  ~ImageFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  const std::vector<char>& bytes() const { return bytes_; }
  std::vector<char> read_back() const {
    std::vector<char> out(bytes_.size() + 1);
    std::ifstream in(path_, std::ios::binary);
    in.read(out.data(), static_cast<long>(out.size()));
    out.resize(static_cast<size_t>(in.gcount()));
    return out;
  }
  timespec mtime() const {
    struct stat st {};
    ::stat(path_.c_str(), &st);
    return st.st_mtim;
  }

 private:
  std::string path_;
  std::vector<char> bytes_;
};

bool on_tmpfs(const std::string& dir) {
  struct statfs fs {};
  return ::statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

TEST(ImageGuest, OnTmpfsIsMappedSharedAndLeftUnchanged) {
  if (!on_tmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not tmpfs here";
  ImageFile file("/dev/shm");
  const timespec before = file.mtime();
  {
    auto g = ImageGuest::open(file.path(), 4096);
    ASSERT_TRUE(g.is_ok()) << g.status().message();
    EXPECT_TRUE((*g)->shared_mapping());
    ASSERT_EQ((*g)->regions().size(), 1u);
    auto mem = (*g)->regions()[0].memory;
    ASSERT_EQ(mem.size(), file.bytes().size());
    // What pinning for RDMA does to the mapping on Linux < 6.2: a write fault on every
    // page, which moves the file's mtime. Same here on one page not yet touched, with the
    // byte it already holds.
    ::usleep(20000);  // a later mtime than the file's, whatever the clock's granularity
    *reinterpret_cast<volatile char*>(mem.data() + 8192) = file.bytes()[8192];
    EXPECT_EQ(std::memcmp(mem.data(), file.bytes().data(), mem.size()), 0);
  }
  EXPECT_EQ(file.read_back(), file.bytes());
  const timespec after = file.mtime();
  EXPECT_EQ(after.tv_sec, before.tv_sec);
  EXPECT_EQ(after.tv_nsec, before.tv_nsec);
}

TEST(ImageGuest, OffTmpfsStaysPrivate) {
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  if (on_tmpfs(cwd)) GTEST_SKIP() << "the working directory is on tmpfs";
  ImageFile file(cwd);
  auto g = ImageGuest::open(file.path(), 4096);
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  EXPECT_FALSE((*g)->shared_mapping());
  auto mem = (*g)->regions()[0].memory;
  EXPECT_EQ(std::memcmp(mem.data(), file.bytes().data(), mem.size()), 0);
}

// An aborted switch-over takes a committed output back: the file leaves PATH for
// PATH.partial at its whole size, takes writes again, and a later commit puts it in place;
// without one, it is removed like any partial output, leaving nothing that looks complete.
TEST(DestinationMemory, AnUncommittedOutputGoesBackToPartialAndIsRemovedOnFailure) {
  const std::string path = "/tmp/ramshift-uncommit-test-" + std::to_string(::getpid()) + ".img";
  const std::string partial = path + ".partial";
  auto exists = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<long>(st.st_size) : -1L;
  };
  const std::vector<uint64_t> regions = {8192, 5000};  // the last one not whole pages
  {
    auto mem = DestinationMemory::create(regions, 4096, {.output_path = path});
    ASSERT_TRUE(mem.is_ok()) << mem.status().message();
    std::memset((*mem)->regions()[1].data(), 0x5a, 5000);
    ASSERT_TRUE((*mem)->commit().is_ok());
    EXPECT_EQ(exists(path), 8192 + 5000);
    EXPECT_EQ(exists(partial), -1);
    ASSERT_TRUE((*mem)->uncommit().is_ok());
    EXPECT_EQ(exists(path), -1) << "nothing at PATH looks complete";
    EXPECT_EQ(exists(partial), 8192 + 8192);
    std::memset((*mem)->regions()[1].data() + 4096, 0x6b, 4096);  // the whole last page again
    ASSERT_TRUE((*mem)->commit().is_ok());
    EXPECT_EQ(exists(path), 8192 + 5000);
    std::ifstream in(path, std::ios::binary);
    std::vector<char> back(8192 + 5000);
    in.read(back.data(), static_cast<long>(back.size()));
    EXPECT_EQ(back[8192 + 4095], 0x5a);
    EXPECT_EQ(back[8192 + 4096], 0x6b);
    ASSERT_TRUE((*mem)->uncommit().is_ok());
  }  // the migration failed after all
  EXPECT_EQ(exists(path), -1);
  EXPECT_EQ(exists(partial), -1) << "the partial output is removed";
}

}  // namespace
}  // namespace ramshift::guest

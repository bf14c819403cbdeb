// `ramshift make-image`: writes a memory image with a chosen pattern (for trying `send`);
// also the memory dumps of `send`/`receive --dump-guest`.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <span>
#include <vector>

#include "commands.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/base/units.h"
#include "ramshift/guest/pattern.h"

namespace ramshift::cli {

namespace {

Status write_bytes(int fd, std::span<const std::byte> data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0)
      return errno_status(errno == ENOSPC ? ErrorCode::kNoSpace : ErrorCode::kIo,
                          fmt::format("cannot write {}", path), errno);
    done += static_cast<size_t>(w);
  }
  return Status::ok();
}

// Writes the whole image into `fd`.
Status fill_image(int fd, const std::string& path, uint64_t size, guest::Pattern pattern,
                  uint64_t seed) {
  constexpr size_t kChunk = 4u << 20;  // whole pages, written with one call each
  std::vector<std::byte> buf(kChunk);
  for (uint64_t off = 0; off < size; off += kChunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, size - off));
    guest::fill_pattern({buf.data(), n}, pattern, seed, off / 4096);
    RS_RETURN_IF_ERROR(write_bytes(fd, {buf.data(), n}, path));
  }
  return Status::ok();
}

}  // namespace

Status write_image(const std::string& path, uint64_t size, guest::Pattern pattern, uint64_t seed,
                   bool overwrite) {
  if (!overwrite && ::access(path.c_str(), F_OK) == 0)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{} exists; pass --overwrite to replace it", path));
  // Written beside the target and renamed at the end: a failed or interrupted run (disk full)
  // leaves neither a short image nor a damaged old one.
  const std::string partial = path + ".partial";
  UniqueFd fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid())
    return errno_status(ErrorCode::kIo, fmt::format("cannot create {}", partial), errno);
  Status s = fill_image(fd.get(), path, size, pattern, seed);
  if (s && ::rename(partial.c_str(), path.c_str()) != 0)
    s = errno_status(ErrorCode::kIo, fmt::format("cannot rename {} to {}", partial, path), errno);
  if (!s) ::unlink(partial.c_str());
  return s;
}

Status write_memory_dump(const std::string& path,
                         const std::vector<std::span<const std::byte>>& regions) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid())
    return errno_status(ErrorCode::kIo, fmt::format("cannot create {}", path), errno);
  for (const auto& r : regions) RS_RETURN_IF_ERROR(write_bytes(fd.get(), r, path));
  return Status::ok();
}

Runner add_make_image(CLI::App& app) {
  struct Opts {
    std::string path, size = "256M", pattern = "mixed";
    uint64_t seed = 1;
    bool overwrite = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("make-image", "write a memory image to try `ramshift send` with");
  cmd->add_option("path", o->path, "output file")->required();
  cmd->add_option("--size", o->size, "image size, e.g. 256M, 1G")->capture_default_str();
  cmd->add_option("--pattern", o->pattern, "zero|random|text|mixed")->capture_default_str();
  cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
  cmd->add_flag("--overwrite", o->overwrite, "replace an existing file");
  return [o]() -> int {
    auto size = parse_size(o->size);
    if (!size) return fail_with(size.status());
    if (*size == 0) return fail_with(Status(ErrorCode::kInvalidArgument, "--size must be above 0"));
    auto pattern = guest::parse_pattern(o->pattern);
    if (!pattern) return fail_with(pattern.status());
    Status s = write_image(o->path, *size, *pattern, o->seed, o->overwrite);
    return s ? 0 : fail_with(s);
  };
}

}  // namespace ramshift::cli

// The bridge's QEMU-side ends: unix sockets (QEMU's `migrate unix:` / `-incoming unix:`)
// and stdio (QEMU's `exec:`). I/O is non-blocking and waits in poll() together with an
// eventfd, so abort() wakes a thread blocked on a QEMU that stopped reading or writing.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "ramshift/base/status.h"
#include "ramshift/base/unique_fd.h"

namespace ramshift::qemu {

class LocalChannel {
 public:
  // A connected socket (both directions on one fd).
  static Result<LocalChannel> from_socket(UniqueFd fd);
  // stdin for reading, stdout for writing (the process must not print to stdout).
  static Result<LocalChannel> from_stdio();

  LocalChannel(LocalChannel&&) = default;
  LocalChannel& operator=(LocalChannel&&) = default;

  // Reads what is there (up to out.size()), waiting for at least one byte. 0 = end of stream.
  // kCancelled once abort() was called; kIo/kDisconnected for a reset.
  Result<size_t> read_some(std::span<std::byte> out);
  // Writes every byte, waiting while QEMU is not reading. kCancelled after abort();
  // kDisconnected when QEMU closed its end.
  Status write_all(std::span<const std::byte> data);
  // End of stream towards QEMU (shutdown(SHUT_WR), or closing stdout).
  void close_write();
  // Wakes every waiter and fails further I/O; QEMU sees its connection go (the migration
  // fails on its side). Thread-safe, idempotent.
  void abort();

 private:
  LocalChannel() = default;
  UniqueFd read_fd_;
  UniqueFd write_fd_;  // a dup of read_fd_ for sockets, so each end closes on its own
  UniqueFd wake_;      // eventfd, readable once aborted
  bool socket_ = false;
};

// Unix-domain listener for QEMU's source side (`migrate unix:PATH`). Replaces a stale
// socket file; removes the file on destruction.
class UnixListener {
 public:
  static Result<UnixListener> open(const std::string& path);
  UnixListener(UnixListener&&) = default;
  UnixListener& operator=(UnixListener&&) = default;
  ~UnixListener();
  // Waits up to `timeout_ms` (-1 = forever) for a connection; kTimeout if none.
  Result<UniqueFd> accept(int timeout_ms);
  const std::string& path() const { return path_; }

 private:
  UnixListener() = default;
  UniqueFd fd_;
  std::string path_;
};

// Connects to a unix socket (the destination QEMU's `-incoming unix:PATH`), retrying while
// nobody listens yet until `timeout_ms` has passed.
Result<UniqueFd> connect_unix(const std::string& path, int timeout_ms);

}  // namespace ramshift::qemu

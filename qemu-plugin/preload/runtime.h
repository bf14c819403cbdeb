// The library's process-wide pieces: the real libc functions, its settings (from the
// environment `ramshift qemu-exec` sets), the mapping that holds an address, one-time notes
// and the stats file.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ramshift/base/status.h"
#include "ramshift/transport/channel_security.h"

namespace ramshift::qemu::preload {

// The next definition of each wrapped function (dlsym RTLD_NEXT), resolved once.
struct RealFunctions {
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*accept)(int, sockaddr*, socklen_t*);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  ssize_t (*sendmsg)(int, const msghdr*, int);
  ssize_t (*recvmsg)(int, msghdr*, int);
  ssize_t (*read)(int, void*, size_t);
  ssize_t (*readv)(int, const iovec*, int);
  ssize_t (*write)(int, const void*, size_t);
  ssize_t (*writev)(int, const iovec*, int);
  int (*close)(int);
};
const RealFunctions& real();

// Environment of `ramshift qemu-exec` (docs/user-guide.md, "QEMU in-process library").
//   RAMSHIFT_QEMU_TRANSPORT  rdma (default) | tcp (the library passes everything through)
//   RAMSHIFT_QEMU_STATS      path of the JSON stats file (none when unset)
//   RAMSHIFT_QEMU_TLS_DIR, RAMSHIFT_QEMU_TLS_PSK, RAMSHIFT_QEMU_TLS_AUTHZ
//                            --tls-dir, --tls-psk, --tls-authz: the READ connection
//                            authenticates (docs/security.md, "The QEMU in-process library")
//   RAMSHIFT_QEMU_MEMORY_WINDOWS  false: the source exposes its memory by the regions' keys
//                            even where the device has type-2 memory windows
//                            (qemu-exec --rdma-memory-windows false)
//   RAMSHIFT_QEMU_PEER_TIMEOUT  seconds (qemu-exec --peer-timeout): how long the source keeps
//                            its memory exposed after its QEMU closed a channel, unless the
//                            destination says it is done first
struct Settings {
  bool enabled = true;
  std::string stats_path;
  transport::BackendSettings tls;  // "tls-dir", "tls-psk", "tls-authz" as the flags give them
  bool authenticate = false;       // tls-dir or tls-psk given
  bool memory_windows = true;
  // Why 5 s by default: ramshift's own --peer-timeout (migration/config.h says why), the time
  // after which any ramshift connection gives a silent peer up.
  std::chrono::milliseconds peer_timeout{5000};
};
const Settings& settings();

// The readable and writable mapping that contains [p, p + len), from /proc/self/maps; empty
// when there is none (the caller then keeps those bytes on the socket).
std::span<std::byte> mapping_of(const void* p, size_t len);

enum class Role { kSource, kDestination };
const char* role_name(Role r);

// The credentials `role` authenticates its READ connections with (the source connects: the
// client's; the destination accepts: the server's), loaded once; null without --tls-*; the
// error (a missing file, a bad key) when they cannot be loaded.
Result<std::shared_ptr<transport::ChannelSecurity>> security_for(Role role);

// One channel's figures; owned by the stats registry, updated by the channel's thread.
struct ChannelStats {
  Role role = Role::kSource;
  int index = 0;  // the order in which this process saw its multifd channels
  // Written by the channel's thread, read by whoever writes the stats file.
  std::atomic<bool> rdma{false};
  std::atomic<uint64_t> rdma_pages{0};
  std::atomic<uint64_t> rdma_reads{0};  // destination: READ work requests those pages took
  std::atomic<uint64_t> rdma_bytes{0};
  std::atomic<uint64_t> socket_bytes{0};
  std::atomic<uint64_t> frames{0};       // packets framed since the switch
  std::atomic<uint64_t> plain_bytes{0};  // of socket_bytes: QEMU's own, before the switch
  std::atomic<int64_t> first_io_ns{0}, last_io_ns{0};  // steady clock
  // Source, on RDMA: the destination's keys are memory windows (else the regions').
  std::atomic<bool> windows{false};
  // Source, once its QEMU closed the channel: how the exposure of its memory ended ("done":
  // the destination's DONE; "disconnected"; "peer timeout") and how long after the close.
  std::atomic<const char*> exposure_ended{nullptr};
  std::atomic<uint64_t> exposed_after_close_ms{0};
  void touch();
};

// A new channel's stats record (kept until the process ends).
std::shared_ptr<ChannelStats> new_channel_stats(Role role);
// Says `message` once per `key` on stderr ("ramshift-qemu: ...") and in the stats file.
void note_once(const std::string& key, const std::string& message);
// Records why `role` did not use RDMA (the first reason is kept, except that a `tentative`
// one, a guess made while still waiting, gives way to the first definite one) and says it once.
void note_fallback(Role role, const std::string& reason, bool tentative = false);
// Adds a registration of the mapping at `begin` (the source registers the mappings it uses
// once per connection, each in its own protection domain; the destination once per process).
void note_registration(const void* begin, uint64_t bytes, double ms);
// Rewrites the stats file (atomically) when one is set.
void write_stats();

}  // namespace ramshift::qemu::preload

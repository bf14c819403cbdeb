// One-sided page pulls for the in-process QEMU library (qemu-plugin/preload/): the
// destination reads pages by RDMA READ straight out of the source process's memory.
//
// No verbs type appears here, so the library that uses it stays free of verbs headers.
//
//   source (PullOrigin)                         destination (PullListener -> PullTarget)
//   connect(ip, port, private data) ---------->  accept: `decide` sees the private data
//   [with security: TLS 1.3 over SEND/RECV, then the destination's verdict (auth_pipe.h)]
//   expose(mapping): registers it, binds a       lkey(mapping) (LOCAL_WRITE)
//     window on this QP (or takes the region's
//     key), then KEY{addr, len, key} --SEND--->  key_for(addr, len): from the KEYs received
//   (posts nothing else; its QP answers READs)   read(ops): RDMA READ, waits for all of them
//   linger(bound): until DONE or the peer  <----  done(): DONE --SEND (no READ after it)
//     leaves, else `bound`; then every key dies  disconnect()
//
// Keys exist only on this connection: they travel in its own SEND messages, after the set-up
// (with security: after the peer authenticated and was allowed), never anywhere else.
// Where the device has type-2 memory windows (and `memory_windows` was not turned off, as
// with --rdma-memory-windows false), the memory is registered for local access and window
// binding only, and the key the peer gets is a window's bound on this connection's queue pair
// for REMOTE_READ: the device refuses it through any other queue pair, and it dies when
// the window is deallocated (when the exposure ends, before the queue pair goes). Otherwise
// the key is the region's (REMOTE_READ), valid through this connection's PD until it is
// deregistered. describe() says which.
// Each source connection has its own protection domain: memory is registered in it for that
// connection only (an rkey opens nothing through another connection's queue pair) and
// deregistered with it, the PD last, whether the connection ends or fails. The destination's
// connections share one PD per device that holds local-access memory only (no rkey exists
// in it), deregistered with the last of them. With a
// ChannelSecurity, connect/accept return only after the peer authenticated (and the
// destination allowed it): nothing is registered for remote access before, so no rkey can
// exist for an unauthenticated peer.
// Thread-safety: one thread per connection object at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "ramshift/base/status.h"
#include "ramshift/transport/channel_security.h"

namespace ramshift::transport::rdma {

using PullMillis = std::chrono::milliseconds;

// Bytes of private data a connect request carries (rdma_cm allows 56 on RDMA_PS_TCP).
inline constexpr size_t kPullPrivateBytes = 32;

struct PullStats {
  uint64_t registered_bytes = 0;
  double registration_ms = 0;
};

// How long an authenticated set-up may take once the queue pair is connected.
inline constexpr std::chrono::seconds kPullAuthTimeout{10};

// Source side: one connection whose queue pair lets the peer READ exposed memory.
class PullOrigin {
 public:
  // Connects to the destination's listener at ip:port (IPv4 text), sending `private_data`
  // (kPullPrivateBytes). With `security` (the client's credentials), then authenticates: the
  // destination's certificate must name `ip`, and the destination must accept this side's
  // identity. Blocks until established and authenticated, refused (kMismatch with the reason
  // either side gave) or `timeout`.
  // `memory_windows`: expose through type-2 memory windows where the device has them (false:
  // the regions' keys, as --rdma-memory-windows false).
  static Result<std::unique_ptr<PullOrigin>> connect(const std::string& ip, uint16_t port,
                                                     std::span<const std::byte> private_data,
                                                     PullMillis timeout,
                                                     transport::ChannelSecurity* security,
                                                     bool memory_windows = true);
  ~PullOrigin();
  PullOrigin(const PullOrigin&) = delete;
  PullOrigin& operator=(const PullOrigin&) = delete;

  // Opens `mapping` to the peer's READs through this connection (registered in its own PD,
  // once per connection; a window bound on its queue pair where there are windows) and tells
  // the peer its key in a KEY message, which the peer holds when this returns; returns the key.
  // kNoSpace with the memlock advice when the limit is too low.
  Result<uint32_t> expose(std::span<const std::byte> mapping);
  // How the exposure ended (linger).
  enum class End { kDone, kDisconnected, kBound };
  // Keeps the exposure until the peer says it is done (DONE) or disconnects, or `bound` passed;
  // then ends it (every window deallocated, every region deregistered: no key opens anything)
  // and disconnects.
  End linger(PullMillis bound);
  PullStats stats() const;
  // "rdma rxe0 -> 10.9.0.2:4791, memory windows", and with security ", TLSv1.3 ..., peer
  // CN=..."; "region keys" instead where there are no windows.
  std::string describe() const;
  // Why the peer gets region keys ("rxe0 has no type-2 memory windows", "--rdma-memory-windows
  // false was given"); empty with windows.
  std::string why_region_keys() const;

 private:
  struct Impl;
  explicit PullOrigin(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One read: `len` bytes from the peer's (remote, rkey) into local memory (local, lkey).
struct PullRead {
  std::byte* local = nullptr;
  uint32_t lkey = 0;
  uint64_t remote = 0;
  uint32_t rkey = 0;
  uint32_t len = 0;
};

// Neighbouring pages are read as one READ of up to this many bytes: a READ's size does not
// matter to the device, the number of work requests and completions does.
constexpr uint32_t kMaxMergedRead = 4u << 20;

// Whether `next` continues `last` on both sides (same keys, adjacent addresses) and the two fit
// one READ.
inline bool continues(const PullRead& last, const PullRead& next) {
  return last.lkey == next.lkey && last.rkey == next.rkey && last.local + last.len == next.local &&
         last.remote + last.len == next.remote && last.len + uint64_t{next.len} <= kMaxMergedRead;
}

// Destination side: one connection that pulls.
class PullTarget {
 public:
  ~PullTarget();
  PullTarget(const PullTarget&) = delete;
  PullTarget& operator=(const PullTarget&) = delete;

  // Registers `mapping` as a READ target (LOCAL_WRITE only), once per device for the process:
  // the destination's connections share one PD, in which nothing is remotely accessible.
  // `added`, when given, gets what this call registered (zero when the mapping already was).
  Result<uint32_t> lkey(std::span<std::byte> mapping, PullStats* added = nullptr);
  // Posts every read and returns when all completed (kIo naming the failed completion, or
  // kTimeout after `timeout` without progress).
  Status read(std::span<const PullRead> reads, PullMillis timeout);
  // The key the source gave for [addr, addr + len) in a KEY message on this connection,
  // waiting up to `timeout` for it (the source sends it before the frame that names the
  // address). kProtocol when the source named memory it gave no key for.
  Result<uint32_t> key_for(uint64_t addr, uint64_t len, PullMillis timeout);
  // Tells the source no READ follows (DONE): it ends its exposure at once. Once; later calls
  // do nothing.
  Status done(PullMillis timeout);
  PullStats stats() const;
  std::string describe() const;

 private:
  friend class PullListener;
  struct Impl;
  explicit PullTarget(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Destination side: an rdma_cm listener on one local IPv4 address (port chosen by the kernel).
class PullListener {
 public:
  // kNotFound when no RDMA device serves `ip` (e.g. 127.0.0.1, or a host without RDMA).
  static Result<std::unique_ptr<PullListener>> create(const std::string& ip);
  ~PullListener();
  PullListener(const PullListener&) = delete;
  PullListener& operator=(const PullListener&) = delete;

  uint16_t port() const;
  // Waits up to `timeout` for one connect request. `decide` sees its private data and returns
  // "" to accept it (it runs before the peer learns the answer), or why it refuses: the
  // request is rejected with that text in the reject message. With `security` (the server's
  // credentials) an accepted connection then authenticates (the peer's identity checked
  // against --tls-authz, a refusal told to the peer). kTimeout when no request came;
  // kWouldBlock when one was refused by `decide`; kMismatch (the reason) when its
  // authentication failed.
  Result<std::unique_ptr<PullTarget>> accept(
      PullMillis timeout, const std::function<std::string(std::span<const std::byte>)>& decide,
      transport::ChannelSecurity* security);

 private:
  struct Impl;
  explicit PullListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ramshift::transport::rdma

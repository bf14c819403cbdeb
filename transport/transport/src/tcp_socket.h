// Socket plumbing for the tcp backend: resolve, listen, connect with a deadline, and the
// per-socket queue hello that groups N sockets into one connection.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/transport/uri.h"

namespace ramshift::transport::tcp {

// First 24 bytes on every socket: u32 magic "RSTQ", u16 version (1), u16 queue_index,
// u16 queue_count, u16 reserved (0), u64 connection nonce, u32 reserved (0).
struct QueueHello {
  uint16_t queue_index = 0;
  uint16_t queue_count = 0;
  uint64_t nonce = 0;
};
inline constexpr size_t kQueueHelloBytes = 24;
inline constexpr uint32_t kQueueHelloMagic = 0x51545352;
void encode_queue_hello(const QueueHello& h, std::byte* out);
Result<QueueHello> decode_queue_hello(const std::byte* in);

Result<UniqueFd> listen_socket(const Uri& uri);
// Connects one socket before `deadline`; the socket is left non-blocking.
Result<UniqueFd> connect_socket(const Uri& uri, std::chrono::steady_clock::time_point deadline);

// Makes `fd` fail with ETIMEDOUT once the peer has not acknowledged anything for `timeout`
// (0 = leave the OS defaults), whether data is outstanding or the socket is idle.
//
// Why the kernel and not heartbeats on the control queue: TCP_USER_TIMEOUT bounds the time
// unacknowledged data may wait (a data queue blocked on a vanished peer), and keepalive probes
// every timeout/5 give an idle socket (a source waiting for ROUND_END or COMMIT) the same bound.
// That covers every one of the N + 1 sockets in every phase without a wire change, without a
// thread to send beats, and without a heartbeat stuck behind a 16 MiB batch on a busy queue.
// A peer whose kernel answers but whose process hangs is not caught here: the protocol's own
// waits (hello, verdict, hand-off) time out for that. A live peer that stops reading (zero
// window) is not a timeout either: its kernel acknowledges the window probes (Linux >= 5.13).
Status set_peer_timeout(int fd, std::chrono::milliseconds timeout);

// "127.0.0.1:7000" / "[::1]:7000" for the local or peer end of `fd`.
std::string local_address(int fd);
std::string peer_address(int fd);
uint16_t local_port(int fd);

// Sends/receives exactly `len` bytes before `deadline` on a non-blocking socket.
Status send_all(int fd, const std::byte* data, size_t len,
                std::chrono::steady_clock::time_point deadline);
Status recv_all(int fd, std::byte* data, size_t len,
                std::chrono::steady_clock::time_point deadline);

// Waits for `events` on `fd` until `deadline`. Ok = ready, kTimeout otherwise.
Status wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline);

}  // namespace ramshift::transport::tcp

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

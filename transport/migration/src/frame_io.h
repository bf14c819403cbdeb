// Sending and receiving whole frames over a transport queue, with deadlines.
#pragma once

#include <atomic>
#include <chrono>
#include <span>

#include "ramshift/transport/blocking_send.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

// Sends header + body on `queue`, retrying on back-pressure until `timeout` passes or
// `abort` turns true (then kCancelled). Returns the bytes put on the wire.
Result<uint64_t> send_frame(transport::Connection& conn, uint32_t queue, wire::FrameType type,
                            std::span<const std::byte> body, std::chrono::milliseconds timeout,
                            const std::atomic<bool>* abort = nullptr);

// The same for a body given as a gather list.
Result<uint64_t> send_frame(transport::Connection& conn, uint32_t queue, wire::FrameType type,
                            std::span<const transport::ConstBuffer> body_segments,
                            std::chrono::milliseconds timeout,
                            const std::atomic<bool>* abort = nullptr);

// Receives the next frame on `queue` (one at a time; the body is valid until the next
// call). kTimeout if none arrives in time; a frame that fails parse_frame is an error.
Result<wire::FrameView> receive_frame(transport::Connection& conn, uint32_t queue,
                                      std::chrono::milliseconds timeout);

// Turns an ERROR frame into the Status it carries, prefixed with who sent it.
Status peer_error(std::span<const std::byte> body, const char* peer);

// MEMORY_KEYS from the peer on `conn`: ranges with a key per queue where the connection's
// keys travel that way (transport::Capabilities::keys_per_queue), checked like any frame.
inline Result<wire::MemoryKeys> decode_memory_keys(const transport::Connection& conn,
                                                   std::span<const std::byte> body,
                                                   const wire::RegionTable& table,
                                                   uint32_t page_size) {
  return wire::decode_memory_keys(body, table, page_size,
                                  conn.capabilities().keys_per_queue ? conn.queue_count() : 0);
}

// Best effort: tells the peer why the session ends (never blocks long, never fails).
void send_error_frame(transport::Connection& conn, const Status& status);

}  // namespace ramshift::migration

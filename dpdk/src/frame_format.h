// The dpdk:// wire protocol inside each UDP payload: one header, then a type's body. DPDK-free,
// so the parser is unit-tested and fuzzable without a port.
//
//   client                                   server (listening on IP:PORT)
//   HELLO(conn, queues) ----- every 100 ms -->  creates the connection, queues its accept
//                       <------------ HELLO_ACK (again for every repeated HELLO)
//   DATA(conn, q, seq, flags, msg_len) ----->  per queue: in order, window-limited
//                       <------ ACK(cum, window, SACK ranges), also every 100 ms as heartbeat
//   DATA(WRITE flag, address, key, bytes) -->  in sequence with the messages: the bytes are
//                                              copied into memory the receiver registered
//                       <------------ REFUSED(q) when a WRITE falls outside it (both fail)
//   DATA(FIN flag, no payload) ------------->  the queue's end: kDisconnected after it
//
// Every field is big-endian. A frame that does not parse is dropped and counted, never trusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace ramshift::transport::dpdk {

// kRawData and kRawEnd are not the protocol's: `bench --raw` frames (below).
enum class FrameType : uint8_t {
  kHello = 1,
  kHelloAck = 2,
  kData = 3,
  kAck = 4,
  kRawData = 5,
  kRawEnd = 6,
  // The receiver's answer to a WRITE outside the memory it registered (queue: the queue's
  // number): the writer fails, as the receiver did. Sent again for every later DATA frame.
  kRefused = 7
};

// DATA flags. A message is the payloads of its frames from FIRST to LAST, in sequence order.
inline constexpr uint16_t kFlagFirst = 1;  // msg_len holds the whole message's length
inline constexpr uint16_t kFlagLast = 2;
inline constexpr uint16_t kFlagFin = 4;  // no payload: the sender closed this queue
// A piece of a one-sided write (Connection::post_write), in sequence with the queue's
// messages but part of none: the payload is a WriteTarget (kWriteTargetBytes), then the bytes
// to copy to that address. No other flag, msg_len 0, at least one byte.
inline constexpr uint16_t kFlagWrite = 8;

inline constexpr uint16_t kMagic = 0x5253;  // "RS"
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderBytes = 20;
// Why 16: 16 ranges of 8 bytes fit any MTU and cover the holes one loss burst leaves.
inline constexpr size_t kMaxSackRanges = 16;

struct FrameHeader {
  FrameType type = FrameType::kData;
  uint32_t conn_id = 0;  // chosen by the client; names the connection on both sides
  uint16_t queue = 0;    // HELLO: the number of queues
  uint16_t flags = 0;
  uint32_t seq = 0;      // DATA: the frame's sequence number in its queue
  uint32_t msg_len = 0;  // DATA with kFlagFirst: the message's total length
};

// Where a WRITE frame's bytes go: an address inside memory the receiver registered
// (kRemoteWrite) under `rkey`, the key register_memory gave it.
inline constexpr size_t kWriteTargetBytes = 12;
struct WriteTarget {
  uint64_t address = 0;
  uint32_t rkey = 0;
};
void write_write_target(const WriteTarget& t, std::span<std::byte> out);
// The target at the front of a WRITE frame's payload (parse_frame checked its length).
WriteTarget read_write_target(std::span<const std::byte> payload);

struct SackRange {
  uint32_t begin = 0;  // first sequence number held
  uint32_t end = 0;    // one past the last
  bool operator==(const SackRange&) const = default;
};

struct AckBody {
  uint32_t cumulative = 0;  // every frame below this one arrived
  uint32_t window = 0;      // frames from `cumulative` on the receiver can take
  std::vector<SackRange> sacks;
};

struct ParsedFrame {
  FrameHeader header;
  std::span<const std::byte> payload;  // DATA: the bytes; ACK: the ACK body (see parse_ack)
};

// Writes the header into the first kHeaderBytes of `out` (which must be that long).
void write_header(const FrameHeader& h, std::span<std::byte> out);
// The frame in `udp_payload`, or nothing when it is not one of ours or is malformed (a raw
// bench frame included: no connection ever takes one).
std::optional<ParsedFrame> parse_frame(std::span<const std::byte> udp_payload);

// `bench --raw` (raw_bench.cc), outside the protocol: the same header with type kRawData
// (conn_id: the run's id, seq: the frame's number, msg_len 0) and then payload bytes the
// receiver does not read, or kRawEnd, the sender's end marker, whose 8-byte payload is how
// many frames the port accepted from it (big-endian).
inline constexpr size_t kRawEndBytes = kHeaderBytes + 8;
struct RawFrame {
  bool end = false;
  uint32_t run_id = 0;
  uint32_t seq = 0;
  uint64_t accepted = 0;  // kRawEnd only
};
// Writes a kRawEnd frame's kRawEndBytes into `out`.
void write_raw_end(uint32_t run_id, uint32_t seq, uint64_t accepted, std::span<std::byte> out);
// The raw bench frame in `udp_payload`, or nothing when it is not one.
std::optional<RawFrame> parse_raw_frame(std::span<const std::byte> udp_payload);

// An ACK body's size and writer; at most kMaxSackRanges ranges are written.
size_t ack_body_bytes(const AckBody& ack);
void write_ack(const AckBody& ack, std::span<std::byte> out);
std::optional<AckBody> parse_ack(std::span<const std::byte> body);

}  // namespace ramshift::transport::dpdk

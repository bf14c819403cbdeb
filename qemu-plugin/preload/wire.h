// What the in-process library adds to a multifd channel (all little-endian). QEMU never sees
// any of it: the source QEMU never reads a multifd socket, the destination QEMU never writes
// one, and the framing is removed before QEMU's reads return.
//
//   source QEMU            source library                destination library        dest QEMU
//   MultiFDInit (64 B) --> STAMP in its unused bytes -->  sees STAMP, answers  -->  init, as sent
//                      <-- reads OFFER (never QEMU)  <--  OFFER on the socket
//                          rdma_cm connect, private   -->  accept: the stream switches at byte
//                          data CONNECT{nonce, N}          offset N of this channel
//   packet (sendmsg)   --> FRAME{inline n, reads[]}   -->  inline bytes to QEMU, then the pages
//                          + header bytes inline           by RDMA READ into QEMU's own iovecs
//
//   STAMP   (8 B at offset 32 of MultiFDInit_t, its unused2[] — QEMU 7.2..10.x ignore it):
//           u32 kStampMagic, u16 version, u16 0
//   OFFER   (16 B): u32 kOfferMagic, u16 version, u16 rdma_cm port, u64 nonce
//   CONNECT (rdma_cm private data, 32 B): u32 kConnectMagic, u16 version, u16 flags, u64 nonce,
//           u64 switch offset N (bytes of the channel before the first FRAME), u64 0;
//           flags bit 0 (kConnectAuthenticates): the source runs with --tls-*, and the TLS
//           handshake then runs on the connection before any FRAME (docs/security.md). Each
//           side decides from its own flags whether to authenticate, never from the bit; the
//           bit only lets the destination refuse a mismatch at once, saying why.
//   FRAME   (16 B + 16 B per read): u32 kFrameMagic, u32 inline bytes, u32 reads, u32 0,
//           then per read: u64 source address, u32 length, u32 0 (no key: the source gives
//           the keys to its memory on the READ connection only, page_pull.h, KEY);
//           then the inline bytes. The stream's bytes for QEMU are the inline bytes followed by
//           the reads' bytes, in order.
// Without a STAMP the destination makes no OFFER; without an OFFER the source sends QEMU's bytes
// unchanged; at offset N the destination checks for kFrameMagic and stays unframed when absent
// (the source gave up connecting), so no mismatch can reach QEMU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace ramshift::qemu::preload {

// 2: frames carry no keys (version 1 carried each read's rkey on QEMU's socket).
inline constexpr uint16_t kWireVersion = 2;
// The version this library speaks and accepts: kWireVersion, or for tests the value of
// RAMSHIFT_QEMU_TEST_WIRE_VERSION (a test knob: plays a library of another version).
uint16_t wire_version();
inline constexpr uint32_t kStampMagic = 0x53515352;    // "RSQS"
inline constexpr uint32_t kOfferMagic = 0x4f515352;    // "RSQO"
inline constexpr uint32_t kConnectMagic = 0x43515352;  // "RSQC"
inline constexpr uint32_t kFrameMagic = 0x46515352;    // "RSQF"
inline constexpr size_t kStampOffset = 32;
inline constexpr size_t kStampBytes = 8;
inline constexpr size_t kOfferBytes = 16;
inline constexpr size_t kConnectBytes = 32;
inline constexpr size_t kFrameHeaderBytes = 16;
inline constexpr size_t kFrameReadBytes = 16;
// Limits a destination enforces on a frame: a multifd packet holds at most 1024 pages
// (multifd.h, kMultifdMaxPagesAlloc) and QEMU's largest single write is far below 64 MiB.
inline constexpr uint32_t kMaxFrameReads = 1024;
inline constexpr uint32_t kMaxFrameInline = 64u << 20;

struct Offer {
  uint16_t port = 0;
  uint64_t nonce = 0;
};
inline constexpr uint16_t kConnectAuthenticates = 1;
struct ConnectRequest {
  uint64_t nonce = 0;
  uint64_t switch_offset = 0;
  bool authenticates = false;
};
struct FrameRead {
  uint64_t addr = 0;
  uint32_t len = 0;
};
struct FrameHeader {
  uint32_t inline_bytes = 0;
  uint32_t reads = 0;
};

// The wire version of the stamp the 64-byte multifd init carries, if it carries one.
std::optional<uint16_t> stamp_version(std::span<const std::byte> init);
// True when the 64-byte multifd init carries a stamp of this wire version.
bool has_stamp(std::span<const std::byte> init);
void put_stamp(std::span<std::byte> init);

void encode_offer(std::byte* out, const Offer& o);
std::optional<Offer> decode_offer(std::span<const std::byte> in);  // nullopt: not ours / version
void encode_connect(std::byte* out, const ConnectRequest& c);
std::optional<ConnectRequest> decode_connect(std::span<const std::byte> in);
// Header plus reads in one buffer.
std::vector<std::byte> encode_frame(uint32_t inline_bytes, std::span<const FrameRead> reads);
// nullopt when the magic or a limit is wrong; `in` is the 16-byte header.
std::optional<FrameHeader> decode_frame_header(std::span<const std::byte> in);
// nullopt for a zero or oversized length, or a nonzero reserved word.
std::optional<FrameRead> decode_frame_read(const std::byte* in);

}  // namespace ramshift::qemu::preload

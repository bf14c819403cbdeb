// ramshift wire protocol: framing and the control messages (docs/protocol.md is the spec).
//
// Every message on every queue is one frame: a 16-byte header then `length` body bytes.
//   u32 magic "RSHF" (0x46485352), u8 type, u8 flags (0), u16 reserved (0),
//   u32 length, u32 crc32c of the body
// All integers are little-endian. parse_frame() checks the header and the CRC; the
// decode_* functions check every field of a body and name the field they reject.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/status.h"

namespace ramshift::wire {

inline constexpr uint32_t kFrameMagic = 0x46485352;  // "RSHF" in little-endian bytes
// 2: MEMORY_KEYS carries key ranges, sent as the destination's memory is prepared.
// 3: a live guest is handed over (COMMIT, HANDOFF, BYE) rather than resumed before COMMIT.
// 4: VERIFY_MISMATCH and the verify-full capability (--verify full); the synthetic guest's
//    DEVICE_STATE carries its generation table after its spec.
inline constexpr uint16_t kProtocolVersion = 4;
inline constexpr size_t kFrameHeaderBytes = 16;
// Why 32 MiB: the largest body is a page batch (page_size x batch pages, capped at 16 MiB by
// the hello checks) or a digest (8 bytes per MiB of guest: 32 MiB covers 4 TiB).
inline constexpr size_t kMaxFrameBody = 32u << 20;

enum class FrameType : uint8_t {
  kHello = 1,        // both ways, first: versions, capabilities, session shape
  kRegionTable = 2,  // source -> destination: the guest's memory regions
  kReady = 3,        // destination -> source: memory prepared, send pages
  kPageBatch = 4,    // source -> destination, data queues: pipeline/batch_format.h
  kRoundEnd = 5,     // source -> destination, each data queue: round done on this queue
  kSwitchover = 6,   // source -> destination: source guest paused, final round follows
  kDeviceState = 7,  // source -> destination: opaque device-state blob
  kDigest = 8,       // source -> destination: one XXH3 per chunk of every region (docs/protocol.md)
  kCommit = 9,       // destination -> source: digest matched; a live guest waits, paused
  kError = 10,       // either way: the session is over, here is why
  kBye = 11,         // either way: orderly end
  kMemoryKeys = 12,  // destination -> source, rdma only: where pages may now be written directly
  kHandOff = 13,     // source -> destination: the source has let the live guest go: run it
  kVerifyMismatch = 14,  // destination -> source, --verify full: chunks its memory got wrong
  // Post-copy (capability kCapPostcopy; docs/protocol.md "Post-copy"):
  kPostcopyStart = 15,  // source -> destination: guest paused; run it; these pages follow
  kPageRequest = 16,    // destination -> source, queue 0: the guest faulted on these pages
  kPostcopyPages = 17,  // source -> destination: a run of pages (queue 0: requested; data: pushed)
  kPostcopyRunning = 18,  // destination -> source: the guest runs here (downtime ends)
  kPostcopyPlaced = 19,   // destination -> source: every page the start named is placed
  kDeviceStateZstd = 20,  // source -> destination: DEVICE_STATE compressed (kCapDeviceStateZstd)
  // Hybrid, before the pause (capability kCapPostcopyDiscard):
  kPostcopyDiscard = 21,    // source -> destination: drop these pages now, the guest still runs
  kPostcopyDiscarded = 22,  // destination -> source: they are dropped
  // A switch-over whose COMMIT ran late (capability kCapSwitchoverAbort):
  kSwitchoverAbort = 23,    // source -> destination: the guest runs here again; drop the copy
  kSwitchoverAborted = 24,  // destination -> source: dropped; rounds of pages may follow
};
inline constexpr FrameType kLastFrameType = FrameType::kSwitchoverAborted;
const char* frame_type_name(FrameType t);

struct FrameView {
  FrameType type;
  std::span<const std::byte> body;
};

// Validates header, length and CRC of one whole message.
Result<FrameView> parse_frame(std::span<const std::byte> message);
// Header for `body` (CRC computed here); send it followed by the body.
std::array<std::byte, kFrameHeaderBytes> frame_header(FrameType type,
                                                      std::span<const std::byte> body);
// The same for a body given as a gather list (the pieces in order).
std::array<std::byte, kFrameHeaderBytes> frame_header(
    FrameType type, std::span<const std::span<const std::byte>> body_segments);

// ---- control messages ------------------------------------------------------------------

// Capability bits a side offers in Hello.
inline constexpr uint64_t kCapXbzrle = 1 << 0;
inline constexpr uint64_t kCapZstd = 1 << 1;
inline constexpr uint64_t kCapDigest = 1 << 2;
inline constexpr uint64_t kCapAll = kCapXbzrle | kCapZstd | kCapDigest;
// --verify full: the source asks for it; a destination that does it answers with the bit.
// Then DIGEST carries hashes of the paused source's memory, the destination compares them
// with hashes of its own memory and answers VERIFY_MISMATCH (resend these) or COMMIT.
inline constexpr uint64_t kCapVerifyFull = 1 << 3;
// Post-copy (`send --mode postcopy|hybrid`): the source asks for it; a destination that can
// run the guest before its memory has arrived (userfaultfd) answers with the bit. Only then
// may POSTCOPY_* and PAGE_REQUEST frames travel. A destination without it refuses the HELLO
// (an unknown bit), so an old peer fails at once and says which bit, never half-way through.
inline constexpr uint64_t kCapPostcopy = 1 << 4;
// The destination takes DEVICE_STATE_ZSTD: it sets the bit in its HELLO whatever the source
// asked; a source sends the compressed form only to a destination that set it, so an older
// destination keeps getting DEVICE_STATE. A source never sets it.
inline constexpr uint64_t kCapDeviceStateZstd = 1 << 5;
// The destination takes POSTCOPY_DISCARD: a hybrid source names the pages dirtied since they
// were sent while its guest still runs, and the destination drops them then, so that only
// those dirtied after the last one are dropped in the downtime. Offered by a destination that
// answers kCapPostcopy; a source sends the frame only to one that set it.
inline constexpr uint64_t kCapPostcopyDiscard = 1 << 6;
// The destination takes SWITCHOVER_ABORT until HANDOFF: it drops the verified copy it holds
// paused (its output file back to PATH.partial, the adopted guest never run) and answers
// SWITCHOVER_ABORTED, and pre-copy rounds go on. Offered to any source, like
// kCapDeviceStateZstd; a source sends the frame only to one that set it.
inline constexpr uint64_t kCapSwitchoverAbort = 1 << 7;
// Every bit this build knows; a peer asking for any other is refused (it needs a newer peer).
inline constexpr uint64_t kCapKnown = kCapAll | kCapVerifyFull | kCapPostcopy |
                                      kCapDeviceStateZstd | kCapPostcopyDiscard |
                                      kCapSwitchoverAbort;

struct Hello {
  uint16_t version_min = kProtocolVersion;
  uint16_t version_max = kProtocolVersion;
  uint64_t capabilities = kCapAll;
  uint32_t page_size = 4096;
  uint32_t data_queues = 1;
  uint32_t batch_pages = 64;
  uint8_t codec = 0;                    // pipeline::CodecMode
  uint64_t xbzrle_cache_per_queue = 0;  // bytes; 0 = no XBZRLE
  uint64_t session_id = 0;
  std::string software;  // kSoftware of the sender ("ramshift 0.1.0"), for logs
};

struct RegionInfo {
  uint32_t id = 0;
  uint64_t bytes = 0;  // exact size; the region spans ceil(bytes / page_size) pages
  std::string name;
};
struct RegionTable {
  std::vector<RegionInfo> regions;
};

// Part of the destination's guest memory, registered for one-sided writes (RDMA WRITE):
// bytes [offset, offset + length) of a region live at `address` under `rkey`. The
// destination sends MEMORY_KEYS frames as it prepares its memory, in any number and at any
// time after READY; a range never overlaps one sent before. Pages outside every range so far
// travel inside batches. In post-copy over rdma the source sends its own ranges the same way
// (registered for one-sided reads only), which the destination reads faulted pages from.
struct KeyRange {
  uint32_t region_id = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t address = 0;
  uint32_t rkey = 0;
  // On a connection whose keys travel one per queue (transport::Capabilities::
  // keys_per_queue): the key for each queue, in queue order (rkey is then queue 0's). The
  // encoder writes them as they are; the decoder reads as many as it is told.
  std::vector<uint32_t> queue_rkeys;
};
struct MemoryKeys {
  std::vector<KeyRange> ranges;
};

struct RoundEnd {
  uint32_t round = 0;
  uint32_t queue = 0;    // data queue index, 0-based
  uint64_t batches = 0;  // page batches this queue sent in the round
};

// DEVICE_STATE_ZSTD: `raw_bytes` of device state as one zstd frame.
struct DeviceStateZstd {
  uint64_t raw_bytes = 0;           // 1..kMaxFrameBody, what DEVICE_STATE would carry
  std::span<const std::byte> zstd;  // the compressed bytes (a view into the body)
};

struct Switchover {
  uint32_t round = 0;
};

struct Digest {
  uint32_t final_round = 0;
  uint32_t chunk_bytes = 0;
  std::vector<std::vector<uint64_t>> regions;  // per region, one XXH3 per chunk
};

// The chunks (digest chunks: DIGEST.chunk_bytes of a region) whose hashes differ.
struct ChunkRef {
  uint32_t region_id = 0;
  uint64_t chunk = 0;
  bool operator==(const ChunkRef&) const = default;
};
struct VerifyMismatch {
  uint32_t attempt = 0;  // 0 for the first DIGEST's answer, then 1, 2, ...
  std::vector<ChunkRef> chunks;
};

// POSTCOPY_START: the source's guest is paused and its DEVICE_STATE sent; the destination
// resumes it now. `pages[r]` is a bitmap (bit p of byte p / 8) of the pages of region r that
// the destination must drop and receive again: every page for a pure post-copy, the pages
// dirtied since their last pre-copy round for a hybrid. `rounds` pre-copy rounds came first.
// POSTCOPY_DISCARD has the same body: `rounds` counts the discards (0, 1, ...) and `pages`
// names the pages to drop now (the destination acknowledges with an empty POSTCOPY_DISCARDED);
// the POSTCOPY_START that follows names them again with the rest.
struct PostcopyStart {
  uint32_t rounds = 0;
  std::vector<std::vector<uint8_t>> pages;  // per region, ceil(region pages / 8) bytes
};

// A page of a region (PAGE_REQUEST).
struct PageRef {
  uint32_t region_id = 0;
  uint64_t page = 0;
  bool operator==(const PageRef&) const = default;
};
struct PageRequest {
  std::vector<PageRef> pages;  // 1..kMaxRequestPages
};
inline constexpr size_t kMaxRequestPages = 1024;

// POSTCOPY_PAGES: `count` consecutive pages of a region from `first`; per page one kind byte
// (0 zero: nothing follows, 1 raw: page_size bytes follow), then the raw pages in order.
// Why at most 16 pages: a requested run must not make the fault behind it wait for 60 KiB
// more than it needs; pushes of 64 KiB reach tcp's line rate on these hosts.
inline constexpr uint32_t kMaxPostcopyRun = 16;
struct PostcopyPagesHeader {
  uint32_t region_id = 0;
  uint64_t first = 0;
  uint32_t count = 0;
};
struct PostcopyPages {
  PostcopyPagesHeader run;
  std::span<const uint8_t> kinds;   // count bytes
  std::span<const std::byte> data;  // page_size x (raw kinds)
};
inline constexpr uint8_t kPageKindZero = 0;
inline constexpr uint8_t kPageKindRaw = 1;

struct ErrorMessage {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// Limits every decoder enforces (and the encoder's caller must respect).
inline constexpr uint32_t kMaxDataQueues = 64;
inline constexpr uint32_t kMaxRegions = 1024;
inline constexpr uint64_t kMaxRegionBytes = uint64_t{1} << 44;  // 16 TiB
inline constexpr uint64_t kMaxCachePerQueue = uint64_t{1} << 30;
inline constexpr size_t kMaxNameBytes = 255;
inline constexpr size_t kMaxErrorMessageBytes = 4096;

std::vector<std::byte> encode(const Hello& m);
std::vector<std::byte> encode(const RegionTable& m);
std::vector<std::byte> encode(const MemoryKeys& m);
std::vector<std::byte> encode(const RoundEnd& m);
std::vector<std::byte> encode(const DeviceStateZstd& m);
// The header checked (raw_bytes within 1..kMaxFrameBody, some compressed bytes); the
// decompression that must give exactly raw_bytes is the receiver's (pipeline/zstd_context.h).
Result<DeviceStateZstd> decode_device_state_zstd(std::span<const std::byte> body);
std::vector<std::byte> encode(const Switchover& m);
std::vector<std::byte> encode(const Digest& m);
std::vector<std::byte> encode(const ErrorMessage& m);
std::vector<std::byte> encode(const VerifyMismatch& m);
std::vector<std::byte> encode(const PostcopyStart& m);
std::vector<std::byte> encode(const PageRequest& m);
// The fixed part of POSTCOPY_PAGES (header and kinds); the raw pages follow it on the wire.
std::vector<std::byte> encode_postcopy_pages_head(const PostcopyPagesHeader& run,
                                                  std::span<const uint8_t> kinds);

Result<Hello> decode_hello(std::span<const std::byte> body);
Result<RegionTable> decode_region_table(std::span<const std::byte> body);
// Also checks each range against the region table the source sent: a known region,
// page-aligned, non-empty, inside the region (rounded up to whole pages), no wrap-around.
// Overlap with earlier frames is the receiver's check (it holds them).
// `queue_keys`: the connection's queue count where keys travel one per queue (each range
// then carries that many after its rkey), else 0.
Result<MemoryKeys> decode_memory_keys(std::span<const std::byte> body, const RegionTable& table,
                                      uint32_t page_size, uint32_t queue_keys = 0);
Result<RoundEnd> decode_round_end(std::span<const std::byte> body);
Result<Switchover> decode_switchover(std::span<const std::byte> body);
Result<Digest> decode_digest(std::span<const std::byte> body);
Result<ErrorMessage> decode_error(std::span<const std::byte> body);
// Also checks each chunk against `chunk_counts` (per region, the digest's chunk count): a
// known region, a chunk inside it; at least one chunk.
Result<VerifyMismatch> decode_verify_mismatch(std::span<const std::byte> body,
                                              const std::vector<uint64_t>& chunk_counts);
// Also checks the shape against the region table: one bitmap per region, of its pages.
Result<PostcopyStart> decode_postcopy_start(std::span<const std::byte> body,
                                            const RegionTable& table, uint32_t page_size);
// Also checks every page against the table: a known region, a page inside it.
Result<PageRequest> decode_page_request(std::span<const std::byte> body, const RegionTable& table,
                                        uint32_t page_size);
// Also checks the run against the table and the body's length against the kinds; the
// spans point into `body`.
Result<PostcopyPages> decode_postcopy_pages(std::span<const std::byte> body,
                                            const RegionTable& table, uint32_t page_size);
// Pages of region `bytes` long (its last page may be partial).
inline uint64_t region_pages(uint64_t bytes, uint32_t page_size) {
  return (bytes + page_size - 1) / page_size;
}

// Frames with no body (Ready, Commit, Bye): anything but an empty body is an error.
Status expect_empty(FrameType type, std::span<const std::byte> body);

}  // namespace ramshift::wire

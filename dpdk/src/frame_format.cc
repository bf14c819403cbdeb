#include "frame_format.h"

#include <algorithm>

namespace ramshift::transport::dpdk {
namespace {

void put16(std::byte* p, uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v);
}
void put32(std::byte* p, uint32_t v) {
  put16(p, uint16_t(v >> 16));
  put16(p + 2, uint16_t(v));
}
uint16_t get16(const std::byte* p) { return uint16_t((uint16_t(p[0]) << 8) | uint16_t(p[1])); }
uint32_t get32(const std::byte* p) { return (uint32_t(get16(p)) << 16) | get16(p + 2); }

}  // namespace

void write_header(const FrameHeader& h, std::span<std::byte> out) {
  std::byte* p = out.data();
  put16(p, kMagic);
  p[2] = std::byte(kVersion);
  p[3] = std::byte(h.type);
  put32(p + 4, h.conn_id);
  put16(p + 8, h.queue);
  put16(p + 10, h.flags);
  put32(p + 12, h.seq);
  put32(p + 16, h.msg_len);
}

std::optional<ParsedFrame> parse_frame(std::span<const std::byte> in) {
  if (in.size() < kHeaderBytes) return std::nullopt;
  const std::byte* p = in.data();
  if (get16(p) != kMagic || uint8_t(p[2]) != kVersion) return std::nullopt;
  auto type = uint8_t(p[3]);
  bool protocol = (type >= uint8_t(FrameType::kHello) && type <= uint8_t(FrameType::kAck)) ||
                  type == uint8_t(FrameType::kRefused);
  if (!protocol) return std::nullopt;
  ParsedFrame f;
  f.header.type = FrameType(type);
  f.header.conn_id = get32(p + 4);
  f.header.queue = get16(p + 8);
  f.header.flags = get16(p + 10);
  f.header.seq = get32(p + 12);
  f.header.msg_len = get32(p + 16);
  f.payload = in.subspan(kHeaderBytes);
  if (f.header.type == FrameType::kData) {
    const uint16_t known = kFlagFirst | kFlagLast | kFlagFin | kFlagWrite;
    if ((f.header.flags & ~known) != 0) return std::nullopt;
    if ((f.header.flags & kFlagWrite) != 0)
      return f.header.flags == kFlagWrite && f.header.msg_len == 0 &&
                     f.payload.size() > kWriteTargetBytes
                 ? std::optional(f)
                 : std::nullopt;
    // A FIN carries nothing and ends no message; a fragment of a message carries bytes.
    bool fin = (f.header.flags & kFlagFin) != 0;
    if (fin && (f.header.flags != kFlagFin || !f.payload.empty())) return std::nullopt;
    if (!fin && f.payload.empty() && f.header.msg_len != 0) return std::nullopt;
    if ((f.header.flags & kFlagFirst) == 0 && f.header.msg_len != 0) return std::nullopt;
  }
  return f;
}

void write_write_target(const WriteTarget& t, std::span<std::byte> out) {
  put32(out.data(), uint32_t(t.address >> 32));
  put32(out.data() + 4, uint32_t(t.address));
  put32(out.data() + 8, t.rkey);
}

WriteTarget read_write_target(std::span<const std::byte> payload) {
  const std::byte* p = payload.data();
  return {(uint64_t(get32(p)) << 32) | get32(p + 4), get32(p + 8)};
}

void write_raw_end(uint32_t run_id, uint32_t seq, uint64_t accepted, std::span<std::byte> out) {
  write_header({FrameType::kRawEnd, run_id, 0, 0, seq, 0}, out);
  put32(out.data() + kHeaderBytes, uint32_t(accepted >> 32));
  put32(out.data() + kHeaderBytes + 4, uint32_t(accepted));
}

std::optional<RawFrame> parse_raw_frame(std::span<const std::byte> in) {
  if (in.size() < kHeaderBytes) return std::nullopt;
  const std::byte* p = in.data();
  if (get16(p) != kMagic || uint8_t(p[2]) != kVersion) return std::nullopt;
  auto type = FrameType(uint8_t(p[3]));
  if (type != FrameType::kRawData && type != FrameType::kRawEnd) return std::nullopt;
  if (get16(p + 8) != 0 || get16(p + 10) != 0 || get32(p + 16) != 0) return std::nullopt;
  RawFrame f;
  f.end = type == FrameType::kRawEnd;
  f.run_id = get32(p + 4);
  f.seq = get32(p + 12);
  if (f.end) {
    if (in.size() != kRawEndBytes) return std::nullopt;
    f.accepted = (uint64_t(get32(p + kHeaderBytes)) << 32) | get32(p + kHeaderBytes + 4);
  }
  return f;
}

size_t ack_body_bytes(const AckBody& ack) {
  return 9 + 8 * std::min(ack.sacks.size(), kMaxSackRanges);
}

void write_ack(const AckBody& ack, std::span<std::byte> out) {
  std::byte* p = out.data();
  put32(p, ack.cumulative);
  put32(p + 4, ack.window);
  size_t n = std::min(ack.sacks.size(), kMaxSackRanges);
  p[8] = std::byte(n);
  for (size_t i = 0; i < n; ++i) {
    put32(p + 9 + 8 * i, ack.sacks[i].begin);
    put32(p + 13 + 8 * i, ack.sacks[i].end);
  }
}

std::optional<AckBody> parse_ack(std::span<const std::byte> in) {
  if (in.size() < 9) return std::nullopt;
  AckBody ack;
  ack.cumulative = get32(in.data());
  ack.window = get32(in.data() + 4);
  size_t n = uint8_t(in[8]);
  if (n > kMaxSackRanges || in.size() != 9 + 8 * n) return std::nullopt;
  for (size_t i = 0; i < n; ++i) {
    SackRange r{get32(in.data() + 9 + 8 * i), get32(in.data() + 13 + 8 * i)};
    // Ranges lie above the cumulative point and are not empty; anything else is forged.
    if (r.begin <= ack.cumulative || r.end <= r.begin) return std::nullopt;
    ack.sacks.push_back(r);
  }
  return ack;
}

}  // namespace ramshift::transport::dpdk

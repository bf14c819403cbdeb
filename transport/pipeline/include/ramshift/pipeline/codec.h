// Codec selection: which page encodings a migration may use.
#pragma once

#include <cstdint>
#include <string_view>

#include "ramshift/base/status.h"

namespace ramshift::pipeline {

enum class CodecMode : uint8_t {
  kAuto,        // zero + xbzrle; zstd only while it measurably beats sending raw
  kNone,        // every page raw, no detection at all (wire-speed measurements)
  kZero,        // zero pages as markers, the rest raw
  kXbzrle,      // zero + XBZRLE deltas against the page cache
  kZstd,        // zero + zstd-compressed batches
  kXbzrleZstd,  // zero + XBZRLE + zstd
};

Result<CodecMode> parse_codec(std::string_view name);  // "auto", "none", "xbzrle+zstd", ...
const char* codec_name(CodecMode mode);

inline bool codec_detects_zero(CodecMode m) { return m != CodecMode::kNone; }
inline bool codec_uses_xbzrle(CodecMode m) {
  return m == CodecMode::kAuto || m == CodecMode::kXbzrle || m == CodecMode::kXbzrleZstd;
}
inline bool codec_may_compress(CodecMode m) {
  return m == CodecMode::kAuto || m == CodecMode::kZstd || m == CodecMode::kXbzrleZstd;
}

struct CodecConfig {
  CodecMode mode = CodecMode::kAuto;
  // Why 1: zstd level 1 compresses ≈ 0.5 GB/s per core on Silesia, about what one queue
  // of a 10 Gbit/s link needs; higher levels cost speed for little extra ratio on RAM.
  int zstd_level = 1;
  // Total XBZRLE cache over all queues on each side. Why 64 MiB: QEMU's default.
  uint64_t xbzrle_cache_bytes = 64ull << 20;
};

}  // namespace ramshift::pipeline

// Reusable zstd compression/decompression contexts (one per queue thread; not thread-safe).
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "ramshift/base/status.h"

namespace ramshift::pipeline {

class ZstdCompressor {
 public:
  explicit ZstdCompressor(int level);
  ~ZstdCompressor();
  ZstdCompressor(ZstdCompressor&&) noexcept;
  ZstdCompressor& operator=(ZstdCompressor&&) noexcept;

  // Compresses `src` into `dst`. Returns the compressed size, or 0 when it did not fit
  // (incompressible for this budget: the caller sends the input uncompressed).
  size_t compress(std::span<const std::byte> src, std::span<std::byte> dst);
  static size_t bound(size_t src_size);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ZstdDecompressor {
 public:
  ZstdDecompressor();
  ~ZstdDecompressor();
  ZstdDecompressor(ZstdDecompressor&&) noexcept;
  ZstdDecompressor& operator=(ZstdDecompressor&&) noexcept;

  // Decompresses `src` into exactly `dst.size()` bytes; anything else is kCorrupt.
  Status decompress(std::span<const std::byte> src, std::span<std::byte> dst);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ramshift::pipeline

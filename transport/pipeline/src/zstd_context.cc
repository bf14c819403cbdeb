#include "ramshift/pipeline/zstd_context.h"

#include <fmt/format.h>
#include <zstd.h>

namespace ramshift::pipeline {

struct ZstdCompressor::Impl {
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  int level;
  ~Impl() { ZSTD_freeCCtx(ctx); }
};

ZstdCompressor::ZstdCompressor(int level) : impl_(std::make_unique<Impl>()) {
  impl_->level = level;
  ZSTD_CCtx_setParameter(impl_->ctx, ZSTD_c_compressionLevel, level);
  // The frame header need not repeat what the batch header already carries.
  ZSTD_CCtx_setParameter(impl_->ctx, ZSTD_c_contentSizeFlag, 0);
  ZSTD_CCtx_setParameter(impl_->ctx, ZSTD_c_checksumFlag, 0);
}
ZstdCompressor::~ZstdCompressor() = default;
ZstdCompressor::ZstdCompressor(ZstdCompressor&&) noexcept = default;
ZstdCompressor& ZstdCompressor::operator=(ZstdCompressor&&) noexcept = default;

size_t ZstdCompressor::compress(std::span<const std::byte> src, std::span<std::byte> dst) {
  size_t r = ZSTD_compress2(impl_->ctx, dst.data(), dst.size(), src.data(), src.size());
  if (ZSTD_isError(r)) {
    ZSTD_CCtx_reset(impl_->ctx, ZSTD_reset_session_only);
    return 0;
  }
  return r;
}

size_t ZstdCompressor::bound(size_t src_size) { return ZSTD_compressBound(src_size); }

struct ZstdDecompressor::Impl {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  ~Impl() { ZSTD_freeDCtx(ctx); }
};

ZstdDecompressor::ZstdDecompressor() : impl_(std::make_unique<Impl>()) {}
ZstdDecompressor::~ZstdDecompressor() = default;
ZstdDecompressor::ZstdDecompressor(ZstdDecompressor&&) noexcept = default;
ZstdDecompressor& ZstdDecompressor::operator=(ZstdDecompressor&&) noexcept = default;

Status ZstdDecompressor::decompress(std::span<const std::byte> src, std::span<std::byte> dst) {
  size_t r = ZSTD_decompressDCtx(impl_->ctx, dst.data(), dst.size(), src.data(), src.size());
  if (ZSTD_isError(r))
    return Status(ErrorCode::kCorrupt,
                  fmt::format("zstd payload does not decompress: {}", ZSTD_getErrorName(r)));
  if (r != dst.size())
    return Status(
        ErrorCode::kCorrupt,
        fmt::format("zstd payload decompressed to {} bytes, header said {}", r, dst.size()));
  return Status::ok();
}

}  // namespace ramshift::pipeline

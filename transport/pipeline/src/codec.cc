#include "ramshift/pipeline/codec.h"

#include <fmt/format.h>

namespace ramshift::pipeline {

namespace {
constexpr struct {
  const char* name;
  CodecMode mode;
} kCodecs[] = {
    {"auto", CodecMode::kAuto}, {"none", CodecMode::kNone},
    {"zero", CodecMode::kZero}, {"xbzrle", CodecMode::kXbzrle},
    {"zstd", CodecMode::kZstd}, {"xbzrle+zstd", CodecMode::kXbzrleZstd},
};
}  // namespace

Result<CodecMode> parse_codec(std::string_view name) {
  for (const auto& c : kCodecs)
    if (name == c.name) return c.mode;
  return Status(
      ErrorCode::kInvalidArgument,
      fmt::format("unknown codec '{}' (choose auto, none, zero, xbzrle, zstd or xbzrle+zstd)",
                  name));
}

const char* codec_name(CodecMode mode) {
  for (const auto& c : kCodecs)
    if (mode == c.mode) return c.name;
  return "?";
}

}  // namespace ramshift::pipeline

#include "ramshift/wire/codec_io.h"

#include <fmt/format.h>

#include <cstring>

namespace ramshift::wire {

std::string BodyReader::read_string(const char* field, size_t max) {
  size_t len = read<uint16_t>(field);
  if (!error_.is_ok()) return {};
  if (len > max) {
    reject(field, fmt::format("length {} exceeds {}", len, max));
    return {};
  }
  if (remaining() < len) {
    fail_truncated(field);
    return {};
  }
  std::string s(reinterpret_cast<const char*>(body_.data() + pos_), len);
  pos_ += len;
  return s;
}

void BodyReader::reject(const char* field, const std::string& why) {
  if (error_.is_ok())
    error_ = Status(ErrorCode::kProtocol, fmt::format("{}.{}: {}", frame_, field, why));
}

void BodyReader::fail_truncated(const char* field) {
  if (error_.is_ok())
    error_ = Status(ErrorCode::kProtocol,
                    fmt::format("{}.{}: frame ends after {} bytes, before this field", frame_,
                                field, body_.size()));
}

Status BodyReader::finish() {
  if (error_.is_ok() && pos_ != body_.size())
    error_ = Status(
        ErrorCode::kProtocol,
        fmt::format("{}: {} unexpected bytes after the last field", frame_, body_.size() - pos_));
  return error_;
}

void BodyWriter::write_string(const std::string& s) {
  write<uint16_t>(static_cast<uint16_t>(s.size()));
  size_t at = buf_.size();
  buf_.resize(at + s.size());
  std::memcpy(buf_.data() + at, s.data(), s.size());
}

void BodyWriter::write_bytes(std::span<const std::byte> bytes) {
  size_t at = buf_.size();
  buf_.resize(at + bytes.size());
  if (!bytes.empty()) std::memcpy(buf_.data() + at, bytes.data(), bytes.size());
}

}  // namespace ramshift::wire

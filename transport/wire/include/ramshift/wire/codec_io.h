// Bounds-checked little-endian body reader and two writers, the one codec style of every
// ramshift protocol: the migration frames (frame.cc), the bench's messages
// (bench/src/bench_wire.cc) and the QEMU bridge's (qemu-plugin/src/bridge_wire.cc).
//
// Reader records the first field it could not read (name included) and then reads zeros,
// so a decoder can read a whole struct straight-line and check once with finish().
// BodyWriter appends to a vector it owns; SpanWriter fills a caller's fixed buffer (a
// message header on the stack, so the hot path allocates nothing).
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/byte_order.h"
#include "ramshift/base/status.h"

namespace ramshift::wire {

class BodyReader {
 public:
  BodyReader(std::span<const std::byte> body, const char* frame) : body_(body), frame_(frame) {}

  template <typename T>
  T read(const char* field) {
    if (!error_.is_ok()) return T{};
    if (body_.size() - pos_ < sizeof(T)) {
      fail_truncated(field);
      return T{};
    }
    T v = load_le<T>(body_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }
  // u16 length then bytes; longer than `max` is an error.
  std::string read_string(const char* field, size_t max);
  // Every byte not read yet (a trailing text, say); the body then counts as read.
  std::span<const std::byte> read_rest() {
    auto rest = body_.subspan(pos_);
    pos_ = body_.size();
    return rest;
  }
  size_t remaining() const { return body_.size() - pos_; }
  // Records a semantic error for `field` (the first error wins).
  void reject(const char* field, const std::string& why);
  bool ok() const { return error_.is_ok(); }
  // Error if any read failed, a field was rejected, or bytes are left over.
  Status finish();

 private:
  void fail_truncated(const char* field);

  std::span<const std::byte> body_;
  size_t pos_ = 0;
  const char* frame_;
  Status error_;
};

class BodyWriter {
 public:
  template <typename T>
  void write(T v) {
    size_t at = buf_.size();
    buf_.resize(at + sizeof(T));
    store_le<T>(buf_.data() + at, v);
  }
  void write_string(const std::string& s);
  void write_bytes(std::span<const std::byte> bytes);
  std::vector<std::byte> take() { return std::move(buf_); }

 private:
  std::vector<std::byte> buf_;
};

class SpanWriter {
 public:
  // `out` is sized by the caller for exactly the message's fixed layout.
  explicit SpanWriter(std::span<std::byte> out) : out_(out) {}
  template <typename T>
  void write(T v) {
    assert(out_.size() - pos_ >= sizeof(T));  // a layout bug, not a peer's fault
    store_le<T>(out_.data() + pos_, v);
    pos_ += sizeof(T);
  }
  size_t written() const { return pos_; }

 private:
  std::span<std::byte> out_;
  size_t pos_ = 0;
};

}  // namespace ramshift::wire

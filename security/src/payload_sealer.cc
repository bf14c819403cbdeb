#include "payload_sealer.h"

#include <fmt/format.h>

#include <array>
#include <climits>

#include "ramshift/base/byte_order.h"

namespace ramshift::security {
namespace {

using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OpenSslDeleter<EVP_CIPHER_CTX_free>>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, OpenSslDeleter<EVP_CIPHER_free>>;
constexpr size_t kTagBytes = 16;

class GcmSealer final : public transport::PayloadSealer {
 public:
  GcmSealer(std::span<const std::byte> key, uint32_t queue) : queue_(queue) {
    std::copy(key.begin(), key.end(), key_.begin());
  }
  ~GcmSealer() override { OPENSSL_cleanse(key_.data(), key_.size()); }

  Status init() {
    cipher_.reset(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
    ctx_.reset(EVP_CIPHER_CTX_new());
    if (!cipher_ || !ctx_)
      return Status(ErrorCode::kInternal,
                    fmt::format("AES-256-GCM is not available: {}", take_openssl_errors()));
    return Status::ok();
  }

  Status seal(std::span<const std::span<const std::byte>> plain,
              std::span<std::byte> out) override {
    size_t total = 0;
    for (auto p : plain) total += p.size();
    if (out.size() < total + kOverhead)
      return Status(ErrorCode::kInternal, "sealing: output buffer too small");
    const uint64_t counter = next_seal_++;
    store_le<uint64_t>(out.data(), counter);
    auto iv = nonce(counter);
    auto* ctx = ctx_.get();
    if (EVP_EncryptInit_ex2(ctx, cipher_.get(), u8(key_.data()), iv.data(), nullptr) != 1)
      return failure("sealing");
    int n = 0;
    // The counter is authenticated too (additional data), though the nonce covers it already.
    if (EVP_EncryptUpdate(ctx, nullptr, &n, u8(out.data()), 8) != 1) return failure("sealing");
    std::byte* at = out.data() + 8;
    for (auto p : plain) {
      for (size_t off = 0; off < p.size();) {
        const int chunk = static_cast<int>(std::min<size_t>(p.size() - off, INT_MAX / 2));
        if (EVP_EncryptUpdate(ctx, u8(at), &n, u8(p.data() + off), chunk) != 1)
          return failure("sealing");
        at += n;
        off += static_cast<size_t>(chunk);
      }
    }
    if (EVP_EncryptFinal_ex(ctx, u8(at), &n) != 1) return failure("sealing");
    at += n;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagBytes, at) != 1)
      return failure("sealing");
    return Status::ok();
  }

  void withdraw_last() override {
    if (next_seal_ > 0) --next_seal_;
  }

  Status open(std::span<const std::byte> sealed, std::span<std::byte> out) override {
    if (sealed.size() < kOverhead)
      return Status(ErrorCode::kMismatch,
                    fmt::format("queue {}: a sealed message of {} bytes is too short", queue_,
                                sealed.size()));
    const size_t len = sealed.size() - kOverhead;
    if (out.size() != len) return Status(ErrorCode::kInternal, "opening: output size differs");
    // Each byte of `sealed` is read once: counter and tag copied first, then the body.
    std::byte counter_raw[8];
    std::copy_n(sealed.data(), 8, counter_raw);
    const uint64_t counter = load_le<uint64_t>(counter_raw);
    if (counter != next_open_)
      return Status(ErrorCode::kMismatch,
                    fmt::format("queue {}: sealed message {} arrived where {} was due (dropped, "
                                "replayed or reordered on the way)",
                                queue_, counter, next_open_));
    std::byte tag[kTagBytes];
    std::copy_n(sealed.data() + 8 + len, kTagBytes, tag);
    auto iv = nonce(counter);
    auto* ctx = ctx_.get();
    int n = 0;
    if (EVP_DecryptInit_ex2(ctx, cipher_.get(), u8(key_.data()), iv.data(), nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagBytes, tag) != 1 ||
        EVP_DecryptUpdate(ctx, nullptr, &n, u8(counter_raw), 8) != 1)
      return failure("opening");
    const std::byte* body = sealed.data() + 8;
    for (size_t off = 0; off < len;) {
      const int chunk = static_cast<int>(std::min<size_t>(len - off, INT_MAX / 2));
      if (EVP_DecryptUpdate(ctx, u8(out.data() + off), &n, u8(body + off), chunk) != 1)
        return failure("opening");
      off += static_cast<size_t>(chunk);
    }
    std::byte sink[16];
    if (EVP_DecryptFinal_ex(ctx, u8(sink), &n) != 1)
      return Status(ErrorCode::kMismatch,
                    fmt::format("queue {}: sealed message {} failed its authentication tag "
                                "(changed on the way, or not from the authenticated peer)",
                                queue_, counter));
    ++next_open_;
    return Status::ok();
  }

 private:
  static unsigned char* u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }
  static const unsigned char* u8(const std::byte* p) {
    return reinterpret_cast<const unsigned char*>(p);
  }
  std::array<unsigned char, 12> nonce(uint64_t counter) const {
    std::array<unsigned char, 12> iv{};
    store_le<uint32_t>(reinterpret_cast<std::byte*>(iv.data()), queue_);
    store_le<uint64_t>(reinterpret_cast<std::byte*>(iv.data()) + 4, counter);
    return iv;
  }
  Status failure(const char* what) const {
    return Status(ErrorCode::kInternal,
                  fmt::format("queue {}: {} failed: {}", queue_, what, take_openssl_errors()));
  }

  std::array<std::byte, 32> key_{};
  uint32_t queue_;
  CipherPtr cipher_;
  CipherCtxPtr ctx_;
  uint64_t next_seal_ = 0;
  uint64_t next_open_ = 0;

 public:
  GcmSealer(const GcmSealer&) = delete;
  GcmSealer& operator=(const GcmSealer&) = delete;
};

}  // namespace

Result<std::unique_ptr<transport::PayloadSealer>> make_payload_sealer(
    std::span<const std::byte> key, uint32_t queue) {
  if (key.size() != 32) return Status(ErrorCode::kInternal, "AES-256-GCM takes a 32-byte key");
  auto s = std::make_unique<GcmSealer>(key, queue);
  RS_RETURN_IF_ERROR(s->init());
  return std::unique_ptr<transport::PayloadSealer>(std::move(s));
}

}  // namespace ramshift::security

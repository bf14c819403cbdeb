// AES-256-GCM sealing of rdma:// payloads (transport::PayloadSealer) with OpenSSL EVP.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "openssl_util.h"
#include "ramshift/transport/channel_security.h"

namespace ramshift::security {

// `key` is 32 bytes. The nonce is u32 queue || u64 counter (little endian): one key per
// direction and queue, so (key, nonce) never repeats while the counter does not wrap (2^64
// messages).
Result<std::unique_ptr<transport::PayloadSealer>> make_payload_sealer(
    std::span<const std::byte> key, uint32_t queue);

}  // namespace ramshift::security

// libFuzzer: every bench protocol message a peer can send (control and data) goes through
// the decoders the bench server and client use; none may crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <span>

#include "bench_wire.h"  // bench/src

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ramshift::bench::wire;
  std::span<const std::byte> msg(reinterpret_cast<const std::byte*>(data), size);
  if (auto kind = control_kind(msg)) {
    (void)decode_config(msg);
    if (auto ready = decode_ready(msg); ready && ready->placed) {
      // A decoded key must name an rkey for every chunk (the client indexes them); chunk i
      // starts at i * chunk_bytes < length, so this cannot overflow.
      const auto& key = ready->key;
      for (size_t i = 0; i < key.rkeys.size(); ++i)
        for (uint32_t q = 0; q <= key.queues; ++q)  // keys per queue, when sent, cover each
          (void)key.rkey_at(key.address + i * key.chunk_bytes, q);
    }
    (void)decode_result(msg);
  }
  (void)load_data_header(msg);
  return 0;
}

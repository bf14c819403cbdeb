// The bench protocol's messages (little-endian). Control on queue 0, data on queues 1..N.
//   Config  client->server  what to expect (validated field by field)
//   Ready   server->client  accepted; the server's memory key when raw pages are placed
//   Finish  client->server  every data queue has ended; send the result
//   Result  server->client  the server's CPU time and what it decoded
//   Error   either way      why the configuration was refused or failed (text)
//   Data    client->server  header + one page batch body;  End: no more batches on the queue
//   Ack     server->client  the batch with this sequence number was decoded
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/transport/transport.h"

namespace ramshift::bench::wire {

inline constexpr uint32_t kControlMagic = 0x43425352;  // "RSBC"
inline constexpr uint32_t kDataMagic = 0x44425352;     // "RSBD"
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kDataHeaderBytes = 16;

enum class ControlKind : uint16_t { kConfig = 1, kReady = 2, kFinish = 3, kResult = 4, kError = 5 };
enum class DataKind : uint32_t { kBatch = 1, kEnd = 2, kAck = 3 };

struct Config {
  uint32_t page_size = 0;
  uint32_t batch_pages = 0;
  uint32_t queues = 0;
  uint8_t codec = 0;  // pipeline::CodecMode
  int32_t zstd_level = 0;
  uint64_t working_set_bytes = 0;
  uint64_t cache_bytes = 0;
  // The client writes each queue's pages with that queue's key (flag bit 0, in a field
  // builds before it sent as 0 and ignored): the server then registers the working set
  // per queue, as a migration's destination does (memory windows where the device has them).
  bool keys_per_queue = false;
};
struct Ready {
  bool placed = false;
  // When placed: the working set's chunks and keys; for a client that asked for keys per
  // queue, also `queues` keys per chunk (`queue_rkeys`), sent after the chunks' keys.
  transport::MemoryKey key;
};
struct ServerResult {
  uint64_t cpu_ns = 0;
  uint64_t batches = 0;
  uint64_t pages = 0;
  // Frames the server's side received and threw away (LinkStats); kNotCounted where its
  // transport does not count them.
  uint64_t dropped_frames = kNotCounted;
  static constexpr uint64_t kNotCounted = ~uint64_t{0};
};

std::vector<std::byte> encode(const Config& c);
std::vector<std::byte> encode(const Ready& r);
std::vector<std::byte> encode(const ServerResult& r);
std::vector<std::byte> encode_finish();
std::vector<std::byte> encode_error(const std::string& message);

// The kind of a control message (kProtocol for a bad magic, version or kind). An Error
// message is returned as kProtocol carrying the peer's text.
Result<ControlKind> control_kind(std::span<const std::byte> msg);
// Decoders check every field and the exact length; kProtocol names the field.
Result<Config> decode_config(std::span<const std::byte> msg);
Result<Ready> decode_ready(std::span<const std::byte> msg);
Result<ServerResult> decode_result(std::span<const std::byte> msg);

void store_data_header(std::byte* out, DataKind kind, uint64_t seq);
struct DataHeader {
  DataKind kind;
  uint64_t seq;
};
Result<DataHeader> load_data_header(std::span<const std::byte> msg);

}  // namespace ramshift::bench::wire

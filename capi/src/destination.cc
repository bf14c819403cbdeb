// The C API's destination handle: a listener, the caller's memory for the regions (or memory
// of its own), then run_destination() for one source at a time.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "handle.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/migration/destination.h"
#include "ramshift/transport/channel_security.h"
#include "ramshift/transport/transport.h"

using namespace ramshift;

namespace ramshift::capi {
namespace {

// The destination's guest: the caller's regions (checked against the source's table), or
// anonymous memory of its own when none were added; keeps the device state for the caller.
class CallerGuest final : public guest::DestinationGuest {
 public:
  explicit CallerGuest(const std::vector<std::span<std::byte>>& regions) : regions_(regions) {}

  Result<std::vector<std::span<std::byte>>> memory_for(const std::vector<uint64_t>& region_bytes,
                                                       uint32_t page_size) override {
    if (page_size != kPageSize)
      return Status(ErrorCode::kMismatch,
                    fmt::format("the source sends {}-byte pages; this destination takes {}",
                                page_size, kPageSize));
    if (!regions_.empty()) {
      if (region_bytes.size() != regions_.size())
        return Status(ErrorCode::kMismatch,
                      fmt::format("the source sends {} region(s) but this destination added {}",
                                  region_bytes.size(), regions_.size()));
      for (size_t i = 0; i < regions_.size(); ++i)
        if (region_bytes[i] != regions_[i].size())
          return Status(ErrorCode::kMismatch,
                        fmt::format("region {} is {} bytes on the source but {} here", i,
                                    region_bytes[i], regions_[i].size()));
      return regions_;
    }
    uint64_t total = 0;
    for (uint64_t b : region_bytes) total += (b + page_size - 1) / page_size * page_size;
    RS_ASSIGN_OR_RETURN(own_, MappedMemory::anonymous(total));
    std::vector<std::span<std::byte>> spans;
    uint64_t at = 0;
    for (uint64_t b : region_bytes) {
      const uint64_t span = (b + page_size - 1) / page_size * page_size;
      spans.push_back(own_.bytes().subspan(at, span));
      at += span;
    }
    return spans;
  }
  Status load_device_state(std::string_view state) override {
    device_state_ = state;
    return Status::ok();
  }
  // The caller starts its guest itself once accept returns 0.
  void resume() override {}

  std::string take_device_state() { return std::move(device_state_); }

 private:
  const std::vector<std::span<std::byte>>& regions_;
  MappedMemory own_;
  std::string device_state_;
};

}  // namespace
}  // namespace ramshift::capi

struct ramshift_destination {
  std::vector<std::span<std::byte>> regions;
  std::unique_ptr<transport::Listener> listener;
  std::string uri;
  // Why 5 s: `ramshift receive --peer-timeout`'s default (SourceConfig::peer_timeout).
  std::chrono::milliseconds peer_timeout{5000};
  transport::BackendSettings settings;  // tls-dir, tls-psk, tls-authz, tls-ktls
  migration::DestinationConfig config;
  std::string device_state;
  capi::RunningCancel cancel;
  capi::LastResult last;
};

extern "C" {

ramshift_destination* ramshift_destination_new(void) {
  return new (std::nothrow) ramshift_destination;
}

void ramshift_destination_free(ramshift_destination* destination) { delete destination; }

int ramshift_destination_add_region(ramshift_destination* destination, const char* name,
                                    void* memory, uint64_t bytes) {
  if (!destination) return RAMSHIFT_E_INVALID;
  if (Status s = capi::check_region(name, memory, bytes); !s) return destination->last.set(s);
  destination->regions.emplace_back(static_cast<std::byte*>(memory), static_cast<size_t>(bytes));
  return destination->last.set(Status::ok());
}

int ramshift_destination_set_option(ramshift_destination* destination, const char* name,
                                    const char* value) {
  if (!destination) return RAMSHIFT_E_INVALID;
  if (!name || !value) return destination->last.invalid("option name and value must not be null");
  const std::string_view n = name;
  if (n == "handshake-timeout") {
    auto t = capi::parse_seconds(n, value);
    if (t) destination->config.handshake_timeout = *t;
    return destination->last.set(t.is_ok() ? Status::ok() : t.status());
  }
  if (n == "peer-timeout") {
    if (destination->listener)
      return destination->last.invalid("peer-timeout must be set before listen");
    auto t = capi::parse_seconds(n, value);
    if (t) destination->peer_timeout = *t;
    return destination->last.set(t.is_ok() ? Status::ok() : t.status());
  }
  if (n == "tls-dir" || n == "tls-psk" || n == "tls-authz" || n == "tls-ktls") {
    if (destination->listener)
      return destination->last.invalid(fmt::format("{} must be set before listen", n));
    transport::BackendSettings next = destination->settings;
    next.set(std::string(n), value);
    if (transport::security_requested(next))
      if (Status s = transport::check_security_settings(next); !s) return destination->last.set(s);
    destination->settings = std::move(next);
    return destination->last.set(Status::ok());
  }
  return destination->last.invalid(fmt::format("no destination option '{}'", n));
}

int ramshift_destination_listen(ramshift_destination* destination, const char* uri) {
  if (!destination) return RAMSHIFT_E_INVALID;
  if (!uri) return destination->last.invalid("the URI to listen on must not be null");
  if (destination->listener) return destination->last.invalid("already listening");
  auto parsed = transport::parse_uri(uri);
  if (!parsed) return destination->last.set(parsed.status());
  transport::TransportOptions options;
  options.peer_timeout = destination->peer_timeout;
  options.settings = destination->settings;
  auto listener = transport::listen(*parsed, options);
  if (!listener) return destination->last.set(listener.status());
  destination->listener = std::move(listener).value();
  destination->uri = destination->listener->address().to_string();
  return destination->last.set(Status::ok());
}

const char* ramshift_destination_uri(const ramshift_destination* destination) {
  return destination ? destination->uri.c_str() : "";
}

int ramshift_destination_accept(ramshift_destination* destination, uint32_t timeout_ms) {
  using std::chrono::milliseconds;
  if (!destination) return RAMSHIFT_E_INVALID;
  if (!destination->listener) return destination->last.invalid("accept before listen");
  destination->device_state.clear();
  migration::CancelToken token;
  destination->cancel.start(&token);
  struct Stop {
    capi::RunningCancel& c;
    ~Stop() { c.stop(); }
  } stop{destination->cancel};
  // Slices of 200 ms, so a cancel is noticed while no source has come yet.
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(timeout_ms);
  std::unique_ptr<transport::Connection> conn;
  while (!conn) {
    if (token.requested())
      return destination->last.set(Status(ErrorCode::kCancelled, "cancelled before a source came"));
    auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (timeout_ms != 0 && left <= milliseconds(0))
      return destination->last.set(
          Status(ErrorCode::kTimeout, fmt::format("no source connected within {} ms", timeout_ms)));
    auto got = destination->listener->accept(
        timeout_ms == 0 ? milliseconds(200) : std::clamp(left, milliseconds(1), milliseconds(200)));
    if (got)
      conn = std::move(got).value();
    else if (got.status().code() != ErrorCode::kTimeout)
      return destination->last.set(got.status());
  }
  capi::CallerGuest guest(destination->regions);
  migration::DestinationConfig config = destination->config;
  config.guest = &guest;
  config.cancel = &token;
  const migration::MigrationReport report = migration::run_destination(std::move(conn), config);
  destination->last.report_json = report.to_json();
  if (report.completed) destination->device_state = guest.take_device_state();
  return destination->last.set(report.error);
}

int ramshift_destination_device_state(const ramshift_destination* destination, const void** data,
                                      size_t* size) {
  if (!destination || !data || !size) return RAMSHIFT_E_INVALID;
  *data = destination->device_state.data();
  *size = destination->device_state.size();
  return RAMSHIFT_OK;
}

void ramshift_destination_cancel(ramshift_destination* destination) {
  if (destination) destination->cancel.request();
}

const char* ramshift_destination_error(const ramshift_destination* destination) {
  return destination ? destination->last.message() : "no destination handle";
}

const char* ramshift_destination_report_json(const ramshift_destination* destination) {
  return destination ? destination->last.report_json.c_str() : "{}";
}

}  // extern "C"

// The C API's source handle: regions, callbacks and options gathered, then run_source().
#include <fmt/format.h>

#include <memory>
#include <new>
#include <string>
#include <vector>

#include "callback_guest.h"
#include "handle.h"
#include "ramshift/base/units.h"
#include "ramshift/migration/cancel.h"
#include "ramshift/migration/source.h"
#include "ramshift/transport/channel_security.h"

using namespace ramshift;

struct ramshift_source {
  std::vector<guest::Region> regions;
  ramshift_source_callbacks callbacks{};
  migration::SourceConfig config;
  capi::RunningCancel cancel;
  capi::LastResult last;
};

namespace {

using capi::kPageSize;

// One `ramshift send` option by its flag's name, the value as typed on the command line.
Status set_option(migration::SourceConfig& c, std::string_view name, std::string_view v) {
  using capi::parse_count;
  using capi::parse_seconds;
  if (name == "queues") {
    RS_ASSIGN_OR_RETURN(c.queues, parse_count(name, v));
  } else if (name == "codec") {
    RS_ASSIGN_OR_RETURN(c.codec.mode, pipeline::parse_codec(v));
  } else if (name == "batch-size") {
    RS_ASSIGN_OR_RETURN(uint64_t bytes, parse_size(v));
    if (bytes % c.page_size != 0 || bytes / c.page_size > 1024)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("option batch-size: {} must be 0 or 1..1024 pages of {} bytes", v,
                                c.page_size));
    c.batch_pages = static_cast<uint32_t>(bytes / c.page_size);
  } else if (name == "max-bandwidth") {
    RS_ASSIGN_OR_RETURN(c.bandwidth_limit, parse_rate(v));
  } else if (name == "xbzrle-cache") {
    RS_ASSIGN_OR_RETURN(c.codec.xbzrle_cache_bytes, parse_size(v));
  } else if (name == "zstd-level") {
    RS_ASSIGN_OR_RETURN(c.codec.zstd_level, capi::parse_int(name, v));
  } else if (name == "downtime-limit") {
    RS_ASSIGN_OR_RETURN(uint32_t ms, parse_count(name, v));
    c.convergence.downtime_limit = std::chrono::milliseconds(ms);
  } else if (name == "max-rounds") {
    RS_ASSIGN_OR_RETURN(c.convergence.max_rounds, parse_count(name, v));
  } else if (name == "auto-converge") {
    RS_ASSIGN_OR_RETURN(c.convergence.auto_converge, capi::parse_switch(name, v));
  } else if (name == "verify") {
    RS_ASSIGN_OR_RETURN(c.verify, migration::parse_verify_mode(v));
  } else if (name == "connect-timeout") {
    RS_ASSIGN_OR_RETURN(c.connect_timeout, parse_seconds(name, v));
  } else if (name == "peer-timeout") {
    RS_ASSIGN_OR_RETURN(c.peer_timeout, parse_seconds(name, v));
  } else if (name == "tls-dir" || name == "tls-psk" || name == "tls-authz" || name == "tls-ktls") {
    // As `ramshift send --tls-*` (docs/security.md); checked once a mode is named, and again
    // as a whole when the migration connects.
    transport::BackendSettings next = c.transport_settings;
    next.set(std::string(name), std::string(v));
    if (transport::security_requested(next))
      RS_RETURN_IF_ERROR(transport::check_security_settings(next));
    c.transport_settings = std::move(next);
  } else {
    return Status(ErrorCode::kInvalidArgument, fmt::format("no source option '{}'", name));
  }
  return Status::ok();
}

}  // namespace

namespace ramshift::capi {

Status check_region(const char* name, const void* memory, uint64_t bytes) {
  if (name == nullptr || memory == nullptr || bytes == 0)
    return Status(ErrorCode::kInvalidArgument, "a region needs a name, memory and a size");
  if (reinterpret_cast<uintptr_t>(memory) % kPageSize != 0 || bytes % kPageSize != 0)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("region '{}' must start on a {}-byte page and be whole pages "
                              "({} bytes given)",
                              name, kPageSize, bytes));
  return Status::ok();
}

}  // namespace ramshift::capi

extern "C" {

ramshift_source* ramshift_source_new(void) {
  auto* s = new (std::nothrow) ramshift_source;
  if (s) s->config.page_size = kPageSize;
  return s;
}

void ramshift_source_free(ramshift_source* source) { delete source; }

int ramshift_source_add_region(ramshift_source* source, const char* name, void* memory,
                               uint64_t bytes) {
  if (!source) return RAMSHIFT_E_INVALID;
  if (Status s = capi::check_region(name, memory, bytes); !s) return source->last.set(s);
  source->regions.push_back(
      guest::Region{name, bytes, {static_cast<std::byte*>(memory), static_cast<size_t>(bytes)}});
  return source->last.set(Status::ok());
}

int ramshift_source_set_callbacks(ramshift_source* source,
                                  const struct ramshift_source_callbacks* callbacks) {
  if (!source) return RAMSHIFT_E_INVALID;
  if (!callbacks) return source->last.invalid("callbacks must not be null");
  if (callbacks->get_dirty_log && !callbacks->pause)
    return source->last.invalid(
        "a guest with a dirty log keeps running, so it needs a pause callback too");
  source->callbacks = *callbacks;
  return source->last.set(Status::ok());
}

int ramshift_source_set_option(ramshift_source* source, const char* name, const char* value) {
  if (!source) return RAMSHIFT_E_INVALID;
  if (!name || !value) return source->last.invalid("option name and value must not be null");
  return source->last.set(set_option(source->config, name, value));
}

int ramshift_source_migrate(ramshift_source* source, const char* uri) {
  if (!source) return RAMSHIFT_E_INVALID;
  if (!uri) return source->last.invalid("the destination URI must not be null");
  if (source->regions.empty()) return source->last.invalid("no region added");
  auto to = transport::parse_uri(uri);
  if (!to) return source->last.set(to.status());
  migration::SourceConfig config = source->config;
  config.to = *to;
  capi::CallbackGuest guest(source->regions, source->callbacks, kPageSize);
  migration::CancelToken token;
  config.cancel = &token;
  source->cancel.start(&token);
  const migration::MigrationReport report = migration::run_source(guest, config);
  source->cancel.stop();
  source->last.report_json = report.to_json();
  const int rc = source->last.set(report.error);
  return rc != RAMSHIFT_OK && guest.callback_failed() ? RAMSHIFT_E_CALLBACK : rc;
}

void ramshift_source_cancel(ramshift_source* source) {
  if (source) source->cancel.request();
}

const char* ramshift_source_error(const ramshift_source* source) {
  return source ? source->last.message() : "no source handle";
}

const char* ramshift_source_report_json(const ramshift_source* source) {
  return source ? source->last.report_json.c_str() : "{}";
}

}  // extern "C"

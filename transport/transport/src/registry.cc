#include "ramshift/transport/registry.h"

#include <fmt/format.h>

#include "loopback.h"
#include "ramshift/base/log.h"
#include "ramshift/transport/channel_security.h"
#include "tcp.h"

namespace ramshift::transport {
namespace {

Status not_available(std::string_view scheme, std::string_view why) {
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("transport '{}' is not available in this build of ramshift ({}); "
                            "use tcp://HOST:PORT",
                            scheme, why));
}

// The core's own backends, entered exactly as a backend library enters itself.
Backend loopback_backend() {
  Backend b;
  b.scheme = "loopback";
  b.summary = "in-process queues (tests, the demo's fast path)";
  b.address_form = AddressForm::kName;
  b.listen = [](const Uri& uri, const TransportOptions&) { return loopback::listen(uri); };
  b.connect = [](const Uri& uri, uint32_t queues, const TransportOptions&) {
    return loopback::connect(uri, queues);
  };
  return b;
}

Backend tcp_backend() {
  Backend b;
  b.scheme = "tcp";
  b.summary = "one TCP connection per queue (baseline and fallback)";
  b.listen = tcp::listen;
  b.connect = tcp::connect;
  return b;
}

}  // namespace

Status BackendRegistry::add(Backend backend) {
  if (backend.scheme.empty())
    return Status(ErrorCode::kInvalidArgument, "a backend needs a scheme");
  if (backend.available() && (!backend.listen || !backend.connect))
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("backend '{}' has no listen or connect factory", backend.scheme));
  std::lock_guard lock(mu_);
  for (const auto& e : entries_)
    if (e->scheme == backend.scheme)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("backend '{}' is registered already", backend.scheme));
  entries_.push_back(std::make_unique<Backend>(std::move(backend)));
  return Status::ok();
}

const Backend* BackendRegistry::find(std::string_view scheme) const {
  std::lock_guard lock(mu_);
  for (const auto& e : entries_)
    if (e->scheme == scheme) return e.get();
  return nullptr;
}

Result<const Backend*> BackendRegistry::require(std::string_view scheme) const {
  const Backend* b = find(scheme);
  if (!b) return not_available(scheme, "no backend registers this scheme");
  if (!b->available()) return not_available(scheme, b->absent_reason);
  return b;
}

std::vector<const Backend*> BackendRegistry::all() const {
  std::lock_guard lock(mu_);
  std::vector<const Backend*> out;
  for (const auto& e : entries_) out.push_back(e.get());
  return out;
}

BackendRegistry& backends() {
  // Built on first use, so a backend's registrar may run before or after this file's statics.
  struct WithBuiltins {
    BackendRegistry registry;
    WithBuiltins() {
      (void)registry.add(loopback_backend());
      (void)registry.add(tcp_backend());
    }
  };
  static WithBuiltins process;
  return process.registry;
}

BackendRegistrar::BackendRegistrar(Backend backend) {
  const std::string scheme = backend.scheme;
  if (Status s = backends().add(std::move(backend)); !s)
    log::error("transport registry: {} (scheme '{}' keeps its first backend)", s.message(), scheme);
}

void refuse_security_settings(Backend& b) {
  b.listen = [scheme = b.scheme, inner = std::move(b.listen)](
                 const Uri& uri,
                 const TransportOptions& options) -> Result<std::unique_ptr<Listener>> {
    RS_RETURN_IF_ERROR(refuse_unauthenticated(scheme, options.settings));
    return inner(uri, options);
  };
  b.connect = [scheme = b.scheme, inner = std::move(b.connect)](
                  const Uri& uri, uint32_t queues,
                  const TransportOptions& options) -> Result<std::unique_ptr<Connection>> {
    RS_RETURN_IF_ERROR(refuse_unauthenticated(scheme, options.settings));
    return inner(uri, queues, options);
  };
}

Status check_settings(const BackendSettings& settings) {
  for (const Backend* b : backends().all())
    if (b->available() && b->check_settings) RS_RETURN_IF_ERROR(b->check_settings(settings));
  return check_security_settings(settings);
}

Result<std::vector<Device>> list_devices(std::string_view scheme) {
  RS_ASSIGN_OR_RETURN(const Backend* b, backends().require(scheme));
  if (!b->list_devices)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("transport '{}' has no devices to list", scheme));
  return b->list_devices();
}

Result<std::string> device_address(std::string_view scheme) {
  RS_ASSIGN_OR_RETURN(const Backend* b, backends().require(scheme));
  if (!b->device_address)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("transport '{}' has no device address", scheme));
  return b->device_address();
}

Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions& options) {
  RS_ASSIGN_OR_RETURN(const Backend* b, backends().require(uri.scheme));
  return b->listen(uri, options);
}

Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options) {
  RS_ASSIGN_OR_RETURN(const Backend* b, backends().require(uri.scheme));
  return b->connect(uri, queues, options);
}

Result<RawBenchReport> run_raw_bench(const RawBenchConfig& config) {
  RS_ASSIGN_OR_RETURN(const Backend* b, backends().require(config.address.scheme));
  if (!b->raw_bench)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("bench --raw measures a DPDK port's raw ceiling and runs over "
                              "dpdk:// only; {}:// has no raw mode (for tcp, iperf3 measures "
                              "the link; for rdma, ib_write_bw)",
                              config.address.scheme));
  return b->raw_bench(config);
}

}  // namespace ramshift::transport

#include "ramshift/transport/channel_security.h"

#include <mutex>
#include <optional>

namespace ramshift::transport {
namespace {

std::mutex& provider_mutex() {
  static std::mutex mu;
  return mu;
}
std::optional<SecurityProvider>& provider_slot() {
  static std::optional<SecurityProvider> slot;
  return slot;
}

std::optional<SecurityProvider> current_provider() {
  std::lock_guard lock(provider_mutex());
  return provider_slot();
}

Status no_provider() {
  return Status(ErrorCode::kInvalidArgument,
                "--tls-dir / --tls-psk: this binary was built without TLS support (OpenSSL); "
                "rebuild with libssl-dev installed (scripts/setup.sh)");
}

}  // namespace

SecurityRegistrar::SecurityRegistrar(SecurityProvider provider) {
  std::lock_guard lock(provider_mutex());
  if (!provider_slot()) provider_slot() = std::move(provider);
}

bool security_requested(const BackendSettings& settings) {
  return settings.find("tls-dir").has_value() || settings.find("tls-psk").has_value();
}

Result<std::shared_ptr<ChannelSecurity>> channel_security(const BackendSettings& settings,
                                                          PeerRole role) {
  RS_RETURN_IF_ERROR(check_security_settings(settings));
  if (!security_requested(settings)) return std::shared_ptr<ChannelSecurity>();
  auto provider = current_provider();
  if (!provider) return no_provider();
  return provider->make(settings, role);
}

Status check_security_settings(const BackendSettings& settings) {
  bool any = false;
  for (const auto& [name, value] : settings.values())
    if (name.starts_with("tls-")) any = true;
  if (!any) return Status::ok();
  if (!security_requested(settings))
    return Status(ErrorCode::kInvalidArgument,
                  "--tls-authz, --tls-ktls and --encrypt need --tls-dir DIR or --tls-psk FILE");
  auto provider = current_provider();
  if (!provider) return no_provider();
  return provider->check ? provider->check(settings) : Status::ok();
}

Status refuse_unauthenticated(const std::string& scheme, const BackendSettings& settings) {
  if (!security_requested(settings)) return Status::ok();
  return Status(ErrorCode::kInvalidArgument,
                "--tls-dir / --tls-psk apply to tcp:// and rdma:// only: " + scheme +
                    ":// does not authenticate its peers yet, and ramshift never falls back to "
                    "an unauthenticated channel when one was asked for (docs/security.md)");
}

}  // namespace ramshift::transport

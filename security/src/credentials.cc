// `ramshift doctor`'s look at the --tls-* credentials: every file readable, parsed, in its
// validity period, signed by the CA, and each key the one its certificate was made for.
#include <fmt/format.h>

#include "openssl_util.h"
#include "ramshift/security/tls_settings.h"

namespace ramshift::security {
namespace {

using StorePtr = std::unique_ptr<X509_STORE, OpenSslDeleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OpenSslDeleter<X509_STORE_CTX_free>>;

// Verifies `leaf` against the CA certificates in `cas`; the reason when it fails.
std::string verify_against(X509* leaf, const std::vector<X509Ptr>& cas) {
  StorePtr store(X509_STORE_new());
  for (const auto& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr) != 1)
    return "cannot set up the check";
  if (X509_verify_cert(ctx.get()) == 1) return "";
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

void check_pair(const TlsSettings& t, const char* cert_name, const char* key_name,
                const std::vector<X509Ptr>* cas, std::vector<CredentialCheck>& out) {
  const std::string cert_path = t.file(cert_name), key_path = t.file(key_name);
  CredentialCheck c{cert_name, false, true, ""};
  if (!file_exists(cert_path) && !file_exists(key_path)) {
    c.present = false;
    c.ok = true;
    c.detail = fmt::format("absent (needed only on the side that {})",
                           cert_name[0] == 's' ? "accepts" : "connects");
    out.push_back(c);
    return;
  }
  auto certs = read_certificates(cert_path);
  if (!certs) {
    c.detail = certs.status().message();
    out.push_back(c);
    return;
  }
  X509* leaf = certs->front().get();
  std::string why = cas ? verify_against(leaf, *cas) : "ca-cert.pem is unusable";
  c.ok = why.empty();
  c.detail = fmt::format("{}, valid until {}{}", subject_of(leaf), not_after_of(leaf),
                         why.empty() ? ", signed by ca-cert.pem" : "; refused: " + why);
  out.push_back(c);
  CredentialCheck k{key_name, false, true, ""};
  auto key = read_private_key(key_path);
  if (!key)
    k.detail = key.status().message();
  else if (X509_check_private_key(leaf, key->get()) != 1)
    k.detail =
        fmt::format("{} is not the key of {}: use the pair made together", key_path, cert_path);
  else
    k.ok = true;
  if (k.ok) k.detail = fmt::format("the key of {}", cert_name);
  ERR_clear_error();
  out.push_back(k);
}

}  // namespace

std::vector<CredentialCheck> check_credentials(const TlsSettings& t) {
  std::vector<CredentialCheck> out;
  if (!t.dir.empty()) {
    CredentialCheck ca{"ca-cert.pem", false, true, ""};
    auto cas = read_certificates(t.file("ca-cert.pem"));
    if (!cas) {
      ca.detail = cas.status().message();
    } else {
      X509* c = cas->front().get();
      ca.ok = X509_cmp_current_time(X509_get0_notAfter(c)) > 0;
      ca.detail = fmt::format("{}, valid until {}{}", subject_of(c), not_after_of(c),
                              ca.ok ? "" : ": expired, renew the CA and every certificate");
    }
    out.push_back(ca);
    const std::vector<X509Ptr>* ca_list = cas ? &*cas : nullptr;
    check_pair(t, "server-cert.pem", "server-key.pem", ca_list, out);
    check_pair(t, "client-cert.pem", "client-key.pem", ca_list, out);
  }
  if (!t.psk_file.empty()) {
    CredentialCheck p{"psk", false, true, ""};
    auto entries = load_psk(t.psk_file);
    p.ok = entries.is_ok();
    p.detail = entries ? fmt::format("{}: {} identit{} (this side offers '{}')", t.psk_file,
                                     entries->size(), entries->size() == 1 ? "y" : "ies",
                                     entries->front().identity)
                       : entries.status().message();
    out.push_back(p);
  }
  if (!t.authz.empty()) {
    CredentialCheck a{"authz", false, true, ""};
    auto allowed = load_authz(t.authz);
    a.ok = allowed.is_ok();
    a.detail = allowed ? fmt::format("{} allowed identit{}", allowed->size(),
                                     allowed->size() == 1 ? "y" : "ies")
                       : allowed.status().message();
    out.push_back(a);
  }
  return out;
}

}  // namespace ramshift::security

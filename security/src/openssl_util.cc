#include "openssl_util.h"

#include <fmt/format.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <sys/stat.h>

#include <ctime>

#include <cstdio>

namespace ramshift::security {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

Result<FilePtr> open_file(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "r"));
  if (!f) return errno_status(ErrorCode::kNotFound, fmt::format("cannot read {}", path), errno);
  return f;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

}  // namespace

std::string take_openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    std::string text = reason ? reason : fmt::format("OpenSSL error {:#x}", e);
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out;
}

Result<std::vector<X509Ptr>> read_certificates(const std::string& path) {
  RS_ASSIGN_OR_RETURN(FilePtr f, open_file(path));
  std::vector<X509Ptr> certs;
  while (X509* c = PEM_read_X509(f.get(), nullptr, nullptr, nullptr)) certs.emplace_back(c);
  ERR_clear_error();  // the end of the file reads as "no start line"
  if (certs.empty())
    return Status(ErrorCode::kInvalidArgument, fmt::format("{} holds no PEM certificate", path));
  return certs;
}

Result<PkeyPtr> read_private_key(const std::string& path) {
  RS_ASSIGN_OR_RETURN(FilePtr f, open_file(path));
  PkeyPtr key(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
  if (!key)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{} holds no readable PEM private key ({}); an encrypted key is "
                              "not supported",
                              path, take_openssl_errors()));
  return key;
}

std::string subject_of(X509* cert) {
  std::unique_ptr<BIO, OpenSslDeleter<BIO_free>> bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  return bio_text(bio.get());
}

std::string not_after_of(X509* cert) {
  std::unique_ptr<BIO, OpenSslDeleter<BIO_free>> bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print_ex(bio.get(), X509_get0_notAfter(cert), ASN1_DTFLGS_ISO8601);
  return bio_text(bio.get());
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

namespace {
sigset_t sigpipe_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  return set;
}
}  // namespace

SigpipeGuard::SigpipeGuard() {
  sigset_t pending;
  sigpending(&pending);
  if (sigismember(&pending, SIGPIPE)) return;
  const sigset_t pipe = sigpipe_set();
  active_ = pthread_sigmask(SIG_BLOCK, &pipe, &old_) == 0;
}

SigpipeGuard::~SigpipeGuard() {
  if (!active_) return;
  const sigset_t pipe = sigpipe_set();
  const timespec zero{0, 0};
  while (sigtimedwait(&pipe, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

}  // namespace ramshift::security

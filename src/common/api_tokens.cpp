#include "common/api_tokens.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace oklog {
namespace {

std::array<uint8_t, 32> Digest(std::string_view token) {
  std::array<uint8_t, 32> d{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d.data());
  return d;
}

bool TokenChar(char c) { return c > 0x20 && c < 0x7f && c != '#' && c != ','; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool IEqualsAscii(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Answers a refused request; true (the guard answered).
bool Refuse(const std::shared_ptr<HttpResponse>& w, int status, const std::string& challenge, const std::string& body) {
  w->Start(status, {{"WWW-Authenticate", challenge},
                    {"Content-Type", "text/plain; charset=utf-8"},
                    {"Content-Length", std::to_string(body.size())}});
  w->Write(body);
  w->Finish();
  return true;
}

}  // namespace

Result<std::shared_ptr<const ApiTokens>> ApiTokens::Parse(std::string_view text) {
  auto t = std::make_shared<ApiTokens>();
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t lf = text.find('\n');
    std::string_view line = text.substr(0, lf);
    text = lf == std::string_view::npos ? std::string_view() : text.substr(lf + 1);
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (line.empty()) continue;
    const std::string where = "line " + std::to_string(line_no);
    size_t sp = line.find_first_of(" \t");
    if (sp == std::string_view::npos)
      return Status::InvalidArgument(where + ": expected \"SCOPES TOKEN\" (e.g. \"read TOKEN\")");
    std::string_view scopes = line.substr(0, sp);
    std::string_view token = Trim(line.substr(sp));
    uint8_t mask = 0;
    for (bool more = true; more;) {
      size_t comma = scopes.find(',');
      std::string_view s = scopes.substr(0, comma);
      more = comma != std::string_view::npos;
      if (more) scopes = scopes.substr(comma + 1);
      if (s == "read") mask |= static_cast<uint8_t>(ApiScope::kRead);
      else if (s == "write") mask |= static_cast<uint8_t>(ApiScope::kWrite);
      else return Status::InvalidArgument(where + ": unknown scope \"" + std::string(s) + "\" (read or write)");
    }
    if (token.size() < kMinTokenChars || token.size() > kMaxTokenChars)
      return Status::InvalidArgument(where + ": a token has " + std::to_string(kMinTokenChars) + " to " +
                                     std::to_string(kMaxTokenChars) + " characters");
    if (!std::all_of(token.begin(), token.end(), TokenChar))
      return Status::InvalidArgument(where + ": a token is printable ASCII without spaces, '#' or ','");
    const auto digest = Digest(token);
    auto same = std::find_if(t->entries_.begin(), t->entries_.end(), [&](const Entry& e) { return e.digest == digest; });
    if (same != t->entries_.end()) same->scopes |= mask;
    else t->entries_.push_back({digest, mask});
  }
  if (t->entries_.empty()) return Status::InvalidArgument("no token (lines of \"read TOKEN\" or \"write TOKEN\")");
  return std::shared_ptr<const ApiTokens>(std::move(t));
}

Result<std::shared_ptr<const ApiTokens>> ApiTokens::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError(path + ": read failed");
  auto r = Parse(ss.str());
  if (!r.ok()) return Status::InvalidArgument(path + ": " + r.status().message());
  return r;
}

ApiTokens::Verdict ApiTokens::Check(std::string_view authorization, ApiScope needed) const {
  std::string_view v = Trim(authorization);
  if (v.size() < 7 || !IEqualsAscii(v.substr(0, 6), "bearer") || (v[6] != ' ' && v[6] != '\t'))
    return Verdict::kMissing;
  std::string_view token = Trim(v.substr(7));
  if (token.empty()) return Verdict::kMissing;
  const auto digest = Digest(token);
  uint8_t scopes = 0;
  for (const Entry& e : entries_) {  // every entry, matched or not
    const bool match = CRYPTO_memcmp(e.digest.data(), digest.data(), digest.size()) == 0;
    scopes |= match ? e.scopes : 0;
  }
  if (scopes == 0) return Verdict::kInvalid;
  return (scopes & static_cast<uint8_t>(needed)) != 0 ? Verdict::kAllowed : Verdict::kForbidden;
}

ApiScope ScopeFor(std::string_view method) {
  return method == "GET" || method == "HEAD" ? ApiScope::kRead : ApiScope::kWrite;
}

HttpServer::Guard TokenGuard(std::function<std::shared_ptr<const ApiTokens>()> current,
                             std::set<std::string> open_paths) {
  return [current = std::move(current), open = std::move(open_paths)](
             const HttpRequest& req, const std::shared_ptr<HttpResponse>& w) {
    std::shared_ptr<const ApiTokens> tokens = current();
    if (tokens == nullptr || open.count(req.path) > 0) return false;
    auto h = req.headers.find("authorization");
    const ApiScope needed = ScopeFor(req.method);
    switch (tokens->Check(h == req.headers.end() ? std::string_view() : std::string_view(h->second), needed)) {
      case ApiTokens::Verdict::kAllowed: return false;
      case ApiTokens::Verdict::kMissing:
        return Refuse(w, 401, "Bearer realm=\"oklog\"",
                      "401 Unauthorized: a bearer token is required (Authorization: Bearer TOKEN)\n");
      case ApiTokens::Verdict::kInvalid:
        return Refuse(w, 401, "Bearer realm=\"oklog\", error=\"invalid_token\"", "401 Unauthorized: unknown token\n");
      case ApiTokens::Verdict::kForbidden: {
        const std::string scope = needed == ApiScope::kRead ? "read" : "write";
        return Refuse(w, 403, "Bearer realm=\"oklog\", error=\"insufficient_scope\", scope=\"" + scope + "\"",
                      "403 Forbidden: the token has no " + scope + " scope\n");
      }
    }
    return false;
  };
}

}  // namespace oklog

#include "common/http_request_parser.h"

#include <http_parser.h>

#include <algorithm>
#include <cctype>

namespace oklog {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ::tolower(x) == ::tolower(y); });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

struct HttpRequestParser::Impl {
  http_parser parser;
};

// http-parser's callbacks. They copy what they need at once: `at` points into the caller's
// input, which may move before the next Execute.
struct HttpParserCallbacks {
  static HttpRequestParser* Of(http_parser* p) { return static_cast<HttpRequestParser*>(p->data); }

  static int OnMessageBegin(http_parser* p) {
    auto* c = Of(p);
    c->request_ = HttpRequest();
    c->body_charge_.Set(0);
    c->url_.clear();
    c->field_.clear();
    c->value_.clear();
    c->in_value_ = false;
    c->header_bytes_ = 0;
    c->request_start_ = std::chrono::steady_clock::now();
    return 0;
  }

  static int OnUrl(http_parser* p, const char* at, size_t len) {
    auto* c = Of(p);
    if (c->CountHeaderBytes(len)) c->url_.append(at, len);
    return 0;
  }

  static int OnHeaderField(http_parser* p, const char* at, size_t len) {
    auto* c = Of(p);
    // + ": " and CRLF once per field: http-parser calls this once per read the name spans, so
    // counting them per call made the limit depend on how the client's bytes were split.
    const bool new_field = c->in_value_ || c->field_.empty();
    if (!c->CountHeaderBytes(len + (new_field ? 4 : 0))) return 0;
    if (c->in_value_) {
      c->CommitHeader();
      c->in_value_ = false;
    }
    c->field_.append(at, len);
    return 0;
  }

  static int OnHeaderValue(http_parser* p, const char* at, size_t len) {
    auto* c = Of(p);
    if (!c->CountHeaderBytes(len)) return 0;
    c->in_value_ = true;
    c->value_.append(at, len);
    return 0;
  }

  static int OnHeadersComplete(http_parser* p) {
    auto* c = Of(p);
    if (c->error_status_ != 0) return 0;
    c->CommitHeader();
    c->request_.method = http_method_str(static_cast<http_method>(p->method));
    if (!c->ParseTarget()) {
      c->Fail(400);
      return 0;
    }
    bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    if (has_length && p->content_length > c->limits_.max_body_bytes) {
      c->Fail(413);
      return 0;
    }
    auto expect = c->request_.headers.find("expect");
    if (expect != c->request_.headers.end() && IEquals(expect->second, "100-continue") && p->http_minor >= 1 &&
        c->on_continue_) {
      c->on_continue_();
    }
    return 0;
  }

  static int OnBody(http_parser* p, const char* at, size_t len) {
    auto* c = Of(p);
    if (c->error_status_ != 0) return 0;
    if (c->request_.body.size() + len > c->limits_.max_body_bytes) {
      c->Fail(413);
      return 0;
    }
    if (!c->body_charge_.TrySet(c->request_.body.size() + len, MemoryBudget::Use::kHttp)) {
      c->Fail(503);
      return 0;
    }
    c->request_.body.append(at, len);
    if (c->on_body_) c->on_body_();
    return 0;
  }

  static int OnMessageComplete(http_parser* p) {
    auto* c = Of(p);
    c->keep_alive_ = http_should_keep_alive(p) != 0 && p->upgrade == 0;
    c->message_complete_ = true;
    http_parser_pause(p, 1);  // one request at a time: the rest waits until its response ends
    return 0;
  }

  static const http_parser_settings& Settings() {
    static const http_parser_settings s = [] {
      http_parser_settings v;
      http_parser_settings_init(&v);
      v.on_message_begin = OnMessageBegin;
      v.on_url = OnUrl;
      v.on_header_field = OnHeaderField;
      v.on_header_value = OnHeaderValue;
      v.on_headers_complete = OnHeadersComplete;
      v.on_body = OnBody;
      v.on_message_complete = OnMessageComplete;
      return v;
    }();
    return s;
  }
};

HttpRequestParser::HttpRequestParser(Limits limits)
    : limits_(limits), impl_(std::make_unique<Impl>()), body_charge_(limits.memory_budget) {
  http_parser_init(&impl_->parser, HTTP_REQUEST);
  impl_->parser.data = this;
}

HttpRequestParser::~HttpRequestParser() = default;

HttpRequestParser::Step HttpRequestParser::Execute(const char* data, size_t n) {
  http_parser* p = &impl_->parser;
  http_parser_pause(p, 0);
  Step step;
  step.consumed = http_parser_execute(p, &HttpParserCallbacks::Settings(), data, n);
  auto err = static_cast<http_errno>(p->http_errno);
  if (error_status_ != 0) {
    step.error_status = error_status_;
  } else if (err != HPE_OK && err != HPE_PAUSED) {
    step.error_status = err == HPE_HEADER_OVERFLOW ? 431 : 400;
    step.error_detail = http_errno_description(err);
  } else if (message_complete_) {
    message_complete_ = false;
    step.request = true;
  }
  return step;
}

bool HttpRequestParser::http11() const {
  const http_parser& p = impl_->parser;
  return p.http_major > 1 || (p.http_major == 1 && p.http_minor >= 1);
}

void HttpRequestParser::Fail(int status) {
  if (error_status_ == 0) error_status_ = status;
  http_parser_pause(&impl_->parser, 1);
}

bool HttpRequestParser::CountHeaderBytes(size_t n) {
  header_bytes_ += n;
  if (header_bytes_ <= limits_.max_header_bytes) return true;
  Fail(431);
  return false;
}

void HttpRequestParser::CommitHeader() {
  if (field_.empty()) return;
  std::string name = Lower(field_);
  auto [it, inserted] = request_.headers.emplace(name, value_);
  if (!inserted) it->second += ", " + value_;
  field_.clear();
  value_.clear();
}

bool HttpRequestParser::ParseTarget() {
  std::string_view t = url_;
  if (t.starts_with("http://") || t.starts_with("https://")) {  // absolute form
    size_t slash = t.find('/', t.find("://") + 3);
    t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
  }
  if (auto hash = t.find('#'); hash != std::string_view::npos) t = t.substr(0, hash);
  if (t == "*" && request_.method == "OPTIONS") {
    request_.path = "*";
    return true;
  }
  if (t.empty() || t.front() != '/') return false;
  size_t q = t.find('?');
  request_.path = UrlDecode(t.substr(0, q), false);
  if (request_.path.find('\0') != std::string::npos) return false;  // never a legitimate path
  if (q != std::string_view::npos) {
    request_.raw_query = std::string(t.substr(q + 1));
    request_.params = ParseQuery(request_.raw_query);
  }
  return true;
}

}  // namespace oklog

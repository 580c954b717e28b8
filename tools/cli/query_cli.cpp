// oklog query and oklog stream: command-line clients of the HTTP API.
//
// Records arrive as "ULID SP topic SP line LF". By default only the line is printed, exactly as
// it was forwarded; -ulid and -topic put those fields back, -time prints the record's time
// (RFC3339, local time) in place of the ULID. A 206 answer (some store node did not answer) is
// reported on stderr as partial results, and is not a failure.
//
// TLS and tokens: an https:// store address (or any -tls-* flag, which makes a bare address
// https) speaks TLS, trusting -tls-ca (else the system's store) and presenting -tls-cert/-tls-key
// when given; -token, or else $OKLOG_TOKEN, goes out as "Authorization: Bearer TOKEN" (the
// environment keeps it out of `ps`).
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include "common/crypto/tls_context.h"
#include "common/flags.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "common/ulid.h"
#include "tools/cli/tools.h"

namespace oklog {
namespace {

struct PrintOptions {
  bool ulid = false;
  bool topic = false;
  bool time = false;
  // oklog stream: the server's notices (topic "oklog.stream", e.g. "dropped N records: ...")
  // go to stderr as "stream: ...", never to stdout.
  bool notices_to_stderr = false;
};

// Splits the streamed body into records and prints the chosen fields of each.
class RecordPrinter {
 public:
  explicit RecordPrinter(PrintOptions o) : o_(o) { out_.reserve(1 << 20); }
  ~RecordPrinter() { Flush(); }

  bool Feed(std::string_view chunk) {
    while (!chunk.empty()) {
      size_t lf = chunk.find('\n');
      if (lf == std::string_view::npos) {
        carry_.append(chunk);
        break;
      }
      if (carry_.empty()) {
        Print(chunk.substr(0, lf));
      } else {
        carry_.append(chunk.substr(0, lf));
        Print(carry_);
        carry_.clear();
      }
      chunk.remove_prefix(lf + 1);
    }
    if (out_.size() >= (1 << 20)) return Flush();
    return true;
  }
  bool Flush() {
    if (!out_.empty() && std::fwrite(out_.data(), 1, out_.size(), stdout) != out_.size()) return false;
    out_.clear();
    return std::fflush(stdout) == 0;
  }
  uint64_t records() const { return records_; }

 private:
  void Print(std::string_view rec) {
    ++records_;
    if (rec.size() < Ulid::kTextSize + 1) {
      out_.append(rec);
      out_ += '\n';
      return;
    }
    std::string_view ulid = rec.substr(0, Ulid::kTextSize);
    std::string_view rest = rec.substr(Ulid::kTextSize + 1);
    size_t sp = rest.find(' ');
    std::string_view topic = sp == std::string_view::npos ? rest : rest.substr(0, sp);
    std::string_view line = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    if (o_.notices_to_stderr && topic == "oklog.stream") {
      --records_;
      std::cerr << "stream: " << line << std::endl;
      return;
    }
    if (o_.time) {
      auto u = Ulid::Parse(ulid);
      std::time_t t = u ? static_cast<std::time_t>(u->unix_ms() / 1000) : 0;
      char buf[64];
      std::tm tm;
      localtime_r(&t, &tm);
      std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm);
      out_ += buf;
      out_ += ' ';
    } else if (o_.ulid) {
      out_.append(ulid);
      out_ += ' ';
    }
    if (o_.topic) {
      out_.append(topic);
      out_ += ' ';
    }
    out_.append(line);
    out_ += '\n';
  }
  PrintOptions o_;
  std::string carry_, out_;
  uint64_t records_ = 0;
};

// The flags for reaching a node's API over TLS and with a token, shared by query and stream.
struct ApiClientFlags {
  std::string tls_ca, tls_cert, tls_key, token;

  void Register(FlagSet* fs) {
    fs->String("tls-ca", &tls_ca, "PEM CA that signs the node's API certificate (implies https; default: the system's)");
    fs->String("tls-cert", &tls_cert, "PEM client certificate to present (implies https; needs -tls-key)");
    fs->String("tls-key", &tls_key, "PEM private key of -tls-cert");
    fs->String("token", &token, "bearer token for the API (default: $OKLOG_TOKEN)");
  }
  bool tls() const { return !tls_ca.empty() || !tls_cert.empty() || !tls_key.empty(); }
  // Sets the TLS context and the Authorization header; false after printing why not.
  bool Apply(const char* mode, HttpClientOptions* opts) const {
    if (tls()) {
      auto ctx = crypto::TlsContext::Create(crypto::TlsRole::kClient, {tls_cert, tls_key, tls_ca, "client"}, nullptr);
      if (!ctx.ok()) {
        std::cerr << mode << ": -tls-*: " << ctx.status().message() << "\n";
        return false;
      }
      opts->tls = *ctx;
    }
    std::string t = token;
    if (t.empty()) {
      const char* env = std::getenv("OKLOG_TOKEN");
      if (env != nullptr) t = env;
    }
    if (!t.empty()) opts->headers.emplace_back("Authorization", "Bearer " + t);
    return true;
  }
};

// https:// when asked for, or when any -tls-* flag is given; the API's port by default.
std::string BaseUrl(const std::string& store, bool tls) {
  std::string s = store;
  if (s.rfind("https://", 0) == 0) {
    s = s.substr(8);
    tls = true;
  }
  if (s.rfind("http://", 0) == 0) s = s.substr(7);
  if (s.rfind("tcp://", 0) == 0) s = s.substr(6);
  while (!s.empty() && s.back() == '/') s.pop_back();
  if (s.find(':') == std::string::npos || (s.front() == '[' && s.find("]:") == std::string::npos)) s += ":7650";
  return (tls ? "https://" : "http://") + s;
}

// The body of an error response (a 400's reason), kept for stderr instead of being printed
// as records.
struct ErrorBody {
  bool active = false;
  std::string text;
  bool Add(std::string_view chunk) {
    if (text.size() < (64 << 10)) text.append(chunk.substr(0, (64 << 10) - text.size()));
    return true;
  }
  std::string Suffix() const {
    std::string t = text;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    return t.empty() ? "" : ": " + t;
  }
};

std::vector<std::string> SplitTopics(const std::vector<std::string>& lists) {
  std::vector<std::string> out;
  for (const auto& l : lists) {
    size_t p = 0;
    while (p <= l.size()) {
      size_t c = l.find(',', p);
      if (c == std::string::npos) c = l.size();
      if (c > p) out.push_back(l.substr(p, c - p));
      p = c + 1;
    }
  }
  return out;
}

int ParseOrHelp(FlagSet& fs, const std::vector<std::string>& args, const char* usage) {
  auto rest = fs.Parse(args);
  if (!rest.ok()) {
    if (rest.status().code() == Code::kNotFound) {
      std::cout << usage << fs.Usage();
      return 0;
    }
    std::cerr << rest.status().message() << "\n";
    return 1;
  }
  if (!rest->empty()) {
    std::cerr << "unexpected argument: " << rest->front() << "\n";
    return 1;
  }
  return -1;
}

// `-topic` alone prints each record's topic (as issue 2 and OK Log's CLI have it); given a
// value (`-topic NAME`, `-topic=NAME`) it selects that topic, as `-topics NAME` does (as the
// storage issue and OK Log's topic-filter PR have it). Rewrites the second form to the first.
std::vector<std::string> TopicSelectors(const std::vector<std::string>& args) {
  auto is_bool = [](std::string_view v) {
    for (const char* b : {"true", "false", "1", "0", "t", "f", "T", "F", "TRUE", "FALSE", "True", "False"})
      if (v == b) return true;
    return false;
  };
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "-topic" || a == "--topic") && i + 1 < args.size() && !args[i + 1].empty() && args[i + 1][0] != '-' &&
        !is_bool(args[i + 1])) {
      out.push_back("-topics");
      out.push_back(args[++i]);
    } else if ((a.rfind("-topic=", 0) == 0 || a.rfind("--topic=", 0) == 0) && !is_bool(a.substr(a.find('=') + 1))) {
      out.push_back("-topics=" + a.substr(a.find('=') + 1));
    } else {
      out.push_back(a);
    }
  }
  return out;
}

constexpr const char* kTopicHelp = "print each record's topic; with a value (-topic NAME) select that topic, as -topics";

}  // namespace

int RunQuery(const std::vector<std::string>& raw_args) {
  const std::vector<std::string> args = TopicSelectors(raw_args);
  std::string store = "localhost:7650", from = "1h", to = "now", q;
  bool regex = false, stats = false, nocopy = false, verbose = false;
  int64_t limit = 0;
  std::vector<std::string> topics;
  PrintOptions po;
  FlagSet fs("query");
  fs.String("store", &store, "address of a store node (any node of the cluster)");
  fs.String("from", &from, "from when: RFC3339 time, a ULID, or a duration meaning that long ago");
  fs.String("to", &to, "to when: RFC3339 time, a ULID, a duration ago, or now");
  fs.String("q", &q, "query term: a substring (empty matches every record)");
  fs.Bool("regex", &regex, "treat -q as an RE2 regular expression");
  fs.Bool("stats", &stats, "statistics only (HEAD request); implies -v");
  fs.Bool("nocopy", &nocopy, "don't read the response body");
  fs.Bool("ulid", &po.ulid, "print each record's ULID");
  fs.Bool("topic", &po.topic, kTopicHelp);
  fs.Bool("time", &po.time, "print each record's time (RFC3339, local time) in place of the ULID");
  fs.Bool("v", &verbose, "verbose: request URL and statistics on stderr");
  fs.StringList("topics", &topics, "only records of these topics, comma-separated (repeatable)");
  fs.Int("limit", &limit, "only the newest N matching records (0: all)");
  ApiClientFlags api;
  api.Register(&fs);
  int rc = ParseOrHelp(fs, args, "Usage: oklog query [flags]\n");
  if (rc >= 0) return rc;
  if (stats) verbose = true;

  std::string url = BaseUrl(store, api.tls()) + "/store/query?from=" + UrlEncode(from) + "&to=" + UrlEncode(to) +
                    "&q=" + UrlEncode(q);
  if (regex) url += "&regex=true";
  for (const auto& t : SplitTopics(topics)) url += "&topic=" + UrlEncode(t);
  if (limit > 0) url += "&limit=" + std::to_string(limit);
  if (verbose) std::cerr << (stats ? "HEAD " : "GET ") << url << "\n";

  auto begin = std::chrono::steady_clock::now();
  RecordPrinter printer(po);
  HttpClientOptions opts;
  opts.timeout = std::chrono::seconds(30);
  if (!api.Apply("query", &opts)) return 1;
  ErrorBody error;
  opts.on_head = [&](const HttpClientResponse& head) { error.active = head.status != 200 && head.status != 206; };
  auto resp = HttpFetch(stats ? "HEAD" : "GET", url, opts, [&](std::string_view chunk) {
    if (error.active) return error.Add(chunk);
    if (nocopy) return true;
    return printer.Feed(chunk);
  });
  if (!resp.ok()) {
    std::cerr << "query: " << resp.status().message() << "\n";
    return 1;
  }
  printer.Flush();
  int code = resp->status;
  if (code != 200 && code != 206) {
    std::cerr << "query: " << url << ": HTTP " << code << error.Suffix() << "\n";
    return 1;
  }
  if (code == 206) {
    std::cerr << "query: partial results: " << resp->Header("X-Oklog-Error-Count", "?")
              << " store node(s) did not answer\n";
  }
  if (verbose) {
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
    uint64_t size = std::strtoull(resp->Header("X-Oklog-Max-Data-Set-Size", "0").c_str(), nullptr, 10);
    std::fprintf(stderr,
                 "Response in %.1f ms\nFrom %s\nTo   %s\nQuery %s (%s)\n%s node(s) queried, %s segment(s) queried\n"
                 "Max data set size %llu bytes (%.2f MiB)\n%s error(s)\nServer duration %s\n",
                 ms, resp->Header("X-Oklog-From").c_str(), resp->Header("X-Oklog-To").c_str(),
                 resp->Header("X-Oklog-Q").c_str(), resp->Header("X-Oklog-Regex") == "true" ? "regex" : "substring",
                 resp->Header("X-Oklog-Nodes-Queried", "0").c_str(),
                 resp->Header("X-Oklog-Segments-Queried", "0").c_str(), static_cast<unsigned long long>(size),
                 size / 1048576.0, resp->Header("X-Oklog-Error-Count", "0").c_str(),
                 resp->Header("X-Oklog-Duration").c_str());
    if (!stats) std::fprintf(stderr, "%llu record(s)\n", static_cast<unsigned long long>(printer.records()));
  }
  return 0;
}

int RunStream(const std::vector<std::string>& raw_args) {
  const std::vector<std::string> args = TopicSelectors(raw_args);
  std::string store = "localhost:7650", q, window = "3s";
  bool regex = false;
  std::vector<std::string> topics;
  PrintOptions po;
  FlagSet fs("stream");
  fs.String("store", &store, "address of a store node (any node of the cluster)");
  fs.String("q", &q, "query term");
  fs.Bool("regex", &regex, "treat -q as an RE2 regular expression");
  fs.String("window", &window, "de-duplication window");
  fs.Bool("ulid", &po.ulid, "print each record's ULID");
  fs.Bool("topic", &po.topic, kTopicHelp);
  fs.StringList("topics", &topics, "only records of these topics, comma-separated (repeatable)");
  ApiClientFlags api;
  api.Register(&fs);
  int rc = ParseOrHelp(fs, args, "Usage: oklog stream [flags]\n");
  if (rc >= 0) return rc;
  std::string url = BaseUrl(store, api.tls()) + "/store/stream?q=" + UrlEncode(q) + "&window=" + UrlEncode(window);
  if (regex) url += "&regex=true";
  for (const auto& t : SplitTopics(topics)) url += "&topic=" + UrlEncode(t);
  po.notices_to_stderr = true;
  RecordPrinter printer(po);
  HttpClientOptions opts;
  if (!api.Apply("stream", &opts)) return 1;
  ErrorBody error;
  opts.on_head = [&](const HttpClientResponse& head) { error.active = head.status != 200; };
  auto resp = HttpFetch("GET", url, opts, [&](std::string_view chunk) {
    if (error.active) return error.Add(chunk);
    return printer.Feed(chunk) && printer.Flush();
  });
  if (!resp.ok()) {
    std::cerr << "stream: " << resp.status().message() << "\n";
    return 1;
  }
  if (resp->status != 200) {
    std::cerr << "stream: " << url << ": HTTP " << resp->status << error.Suffix() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace oklog

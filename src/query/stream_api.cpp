#include "query/stream_api.h"

#include <utility>

#include "common/duration.h"

namespace oklog {

Result<StreamSpec> ParseStreamParams(const std::multimap<std::string, std::string>& params) {
  // The query's own parser for what the two share, so q, regex, topic and format mean the same.
  std::multimap<std::string, std::string> shared;
  for (const auto& [key, value] : params) {
    if (key == "q" || key == "regex" || key == "topic" || key == "format") shared.emplace(key, value);
  }
  OKLOG_ASSIGN_OR_RETURN(QueryParams p, ParseQueryParams(shared, 0));
  StreamSpec spec;
  spec.match = MatchSpec{p.q, p.mode, p.topics};
  spec.format = p.format;
  spec.window = kDefaultStreamWindow;
  auto it = params.find("window");
  if (it != params.end() && !it->second.empty()) {
    // OK Log silently used 3s for a window it could not parse; a typo deserves a 400.
    Result<Nanos> d = ParseDuration(it->second);
    if (!d.ok()) return Status::InvalidArgument("parsing 'window': " + d.status().message());
    spec.window = std::chrono::duration_cast<std::chrono::milliseconds>(d.value());
  }
  if (spec.window < kMinStreamWindow) spec.window = kMinStreamWindow;
  return spec;
}

StreamService::StreamService(StreamRegistry::Options options, Registry* metrics)
    : metrics_(metrics),
      registry_(std::move(options), metrics),
      requests_(metrics->NewCounterFamily("oklog_stream_requests_total",
                                          "Live stream requests by result (ok, bad_request, refused: the memory budget).", {"result"})) {}

void StreamService::Register(HttpServer* server) {
  auto handler = [this](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) { Handle(req, std::move(resp)); };
  server->Handle("/store/stream", handler);
  server->Handle("/store/_stream", handler);
}

void StreamService::EnableFanout(uv_loop_t* loop, gossip::PeerView* view, rpc::RpcServer* server,
                                 rpc::RpcClient* client, StreamFanout::Options options) {
  fanout_ = std::make_unique<StreamFanout>(loop, &registry_, view, server, client, options, metrics_);
}

void StreamService::Close() {
  closing_ = true;
  if (fanout_) fanout_->Close();
  registry_.Close();
}

void StreamService::Handle(const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
  if (req.path != "/store/stream" && req.path != "/store/_stream") return resp->Send(404, "404 page not found\n");
  if (req.method != "GET" && req.method != "HEAD") {
    resp->Start(405, {{"Allow", "GET, HEAD"}, {"Content-Type", "text/plain; charset=utf-8"}});
    resp->Write("method not allowed\n");
    resp->Finish();
    return;
  }
  const bool fan_out = fanout_ != nullptr && req.path == "/store/stream";
  auto bad = [&](const Status& s) {
    requests_->With({"bad_request"})->Inc();
    resp->Send(400, s.message() + "\n");
  };
  Result<StreamSpec> spec = ParseStreamParams(req.params);
  if (!spec.ok()) return bad(spec.status());
  if (closing_) return resp->Send(503, "shutting down\n");
  HttpResponse::Headers headers = {
      {"Content-Type",
       spec->format == OutputFormat::kJson ? "application/x-ndjson" : "text/plain; charset=utf-8"},
      {"Cache-Control", "no-cache"},
      {"X-Accel-Buffering", "no"},  // proxies such as nginx: pass records through at once
      {"X-Oklog-Q", spec->match.q},
      {"X-Oklog-Regex", spec->match.mode == MatchMode::kRegex ? "true" : "false"},
      {"X-Oklog-Window", FormatDuration(spec->window)},
      {"X-Oklog-Nodes-Streamed", std::to_string(1 + (fan_out ? fanout_->peers() : 0))},
  };
  if (req.method == "HEAD" || resp->is_head()) {
    Result<std::unique_ptr<Matcher>> matcher = Matcher::Create(spec->match);
    if (!matcher.ok()) return bad(matcher.status());
    requests_->With({"ok"})->Inc();
    resp->Start(200, headers);
    return resp->Finish();
  }
  // Subscribing compiles the filter, so a bad regex is still a 400. Nothing is published
  // between here and Start: both run on the loop thread.
  auto id_holder = std::make_shared<StreamId>(0);
  std::function<void()> on_end;
  if (fan_out) {
    on_end = [this, id_holder] {
      if (fanout_) fanout_->End(*id_holder);
    };
  }
  Result<StreamId> id = registry_.Subscribe(spec.value(), resp, std::move(on_end));
  if (!id.ok() && id.status().code() == Code::kResourceExhausted) {
    requests_->With({"refused"})->Inc();
    return resp->Send(503, id.status().message() + "\n");
  }
  if (!id.ok()) return bad(id.status());
  *id_holder = id.value();
  requests_->With({"ok"})->Inc();
  resp->Start(200, headers);
  if (fan_out && registry_.Has(id.value())) fanout_->Start(id.value(), spec->match);
}

}  // namespace oklog

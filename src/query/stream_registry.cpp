#include "query/stream_registry.h"

#include <cstring>
#include <deque>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/memory_budget.h"
#include "common/ulid.h"
#include "query/record_sink.h"

namespace oklog {

namespace {

struct UlidHash {
  size_t operator()(const Ulid& u) const noexcept {
    uint64_t hi, lo;
    std::memcpy(&hi, u.bytes().data(), 8);
    std::memcpy(&lo, u.bytes().data() + 8, 8);
    return static_cast<size_t>((hi * 0x9E3779B97F4A7C15ull) ^ lo);  // lo is random entropy
  }
};

uint64_t SteadyMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// The topic of drop notices. Ingest accepts only [a-zA-Z0-9][a-zA-Z0-9_-]* as a topic, so no
// stored record can carry this one.
constexpr std::string_view kNoticeTopic = "oklog.stream";
constexpr std::string_view kNoticeMarker = " oklog.stream ";  // what follows a notice's ULID


std::string HumanBytes(size_t n) {
  if (n >= (1 << 20) && n % (1 << 20) == 0) return std::to_string(n >> 20) + " MiB";
  if (n >= (1 << 10) && n % (1 << 10) == 0) return std::to_string(n >> 10) + " KiB";
  return std::to_string(n) + " bytes";
}

}  // namespace

struct StreamRegistry::Subscription {
  StreamId id = 0;
  StreamSpec spec;
  std::unique_ptr<Matcher> matcher;
  std::shared_ptr<HttpResponse> response;
  std::function<void()> on_end;
  bool gone = false;     // removed while the registry was busy; erased when it is not
  bool lagging = false;  // dropping until the response drains
  uint64_t unreported_drops = 0;
  // ULIDs delivered within the window: a set for lookups, a queue in delivery order for expiry.
  std::unordered_set<Ulid, UlidHash> seen;
  std::deque<std::pair<uint64_t, Ulid>> order;

  void Expire(uint64_t now, size_t max_entries) {
    const uint64_t window = static_cast<uint64_t>(spec.window.count());
    while (!order.empty() && (order.front().first + window <= now || order.size() > max_entries)) {
      seen.erase(order.front().second);
      order.pop_front();
    }
  }
};

// Removal is deferred while the registry is on the stack: a Write can close a response
// synchronously, and its close callback unsubscribes.
class StreamRegistryBusy {
 public:
  explicit StreamRegistryBusy(int* depth) : depth_(depth) { ++*depth_; }
  ~StreamRegistryBusy() { --*depth_; }

 private:
  int* depth_;
};

StreamRegistry::StreamRegistry(Options options, Registry* metrics)
    : options_(std::move(options)),
      subscribers_(metrics->NewGauge("oklog_stream_subscribers", "Live stream subscriptions on this node.")),
      delivered_(metrics->NewCounter("oklog_stream_records_delivered_total",
                                     "Records written to live stream subscribers.")),
      delivered_bytes_(metrics->NewCounter("oklog_stream_bytes_delivered_total",
                                           "Bytes written to live stream subscribers.")),
      dropped_(metrics->NewCounter("oklog_stream_dropped_records_total",
                                   "Records not sent to a live stream subscriber that was too far behind.")),
      duplicates_(metrics->NewCounter("oklog_stream_duplicate_records_total",
                                      "Records not sent again to a subscriber within its de-duplication window.")) {
  if (!options_.now_ms) options_.now_ms = SteadyMs;
  if (!options_.wall_ms) options_.wall_ms = NowUnixMs;
}

StreamRegistry::~StreamRegistry() { Close(); }

Result<StreamId> StreamRegistry::Subscribe(const StreamSpec& spec, std::shared_ptr<HttpResponse> response,
                                           std::function<void()> on_end) {
  OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<Matcher> matcher, Matcher::Create(spec.match));
  if (options_.memory_budget != nullptr && !options_.memory_budget->Admit(MemoryBudget::Use::kStream))
    return Status::ResourceExhausted("the node's memory budget is used up; retry later");
  auto sub = std::make_unique<Subscription>();
  sub->id = next_id_++;
  sub->spec = spec;
  sub->matcher = std::move(matcher);
  sub->response = std::move(response);
  sub->on_end = std::move(on_end);
  const StreamId id = sub->id;
  HttpResponse* resp = sub->response.get();
  subs_.emplace(id, std::move(sub));
  subscribers_->Set(static_cast<double>(++live_));
  // Both callbacks are dropped by the response when it closes, and cleared by Remove.
  resp->OnDrain([this, id] {
    {
      StreamRegistryBusy busy(&busy_);
      auto it = subs_.find(id);
      if (it != subs_.end() && !it->second->gone) Resume(it->second.get());
    }
    Sweep();
  });
  resp->OnClose([this, id] { Remove(id, false); });  // at once if already closed
  return id;
}

void StreamRegistry::Unsubscribe(StreamId id) { Remove(id, false); }

bool StreamRegistry::Has(StreamId id) const {
  auto it = subs_.find(id);
  return it != subs_.end() && !it->second->gone;
}

void StreamRegistry::Remove(StreamId id, bool finish) {
  auto it = subs_.find(id);
  if (it == subs_.end() || it->second->gone) return;
  Subscription* sub = it->second.get();
  sub->gone = true;
  std::shared_ptr<HttpResponse> resp = sub->response;
  resp->OnDrain(nullptr);
  resp->OnClose(nullptr);
  subscribers_->Set(static_cast<double>(--live_));
  auto on_end = std::move(sub->on_end);
  sub->on_end = nullptr;
  if (finish) resp->Finish();
  if (busy_ == 0) subs_.erase(id);
  if (on_end) on_end();  // last: it may call back into the registry
}

void StreamRegistry::Sweep() {
  if (busy_ != 0 || live_ == subs_.size()) return;
  for (auto it = subs_.begin(); it != subs_.end();) {
    it = it->second->gone ? subs_.erase(it) : std::next(it);
  }
}

void StreamRegistry::Close() {
  std::vector<StreamId> ids;
  for (const auto& [id, sub] : subs_) ids.push_back(id);
  {
    StreamRegistryBusy busy(&busy_);
    for (StreamId id : ids) Remove(id, true);
  }
  Sweep();
}

void StreamRegistry::Publish(std::string_view records) {
  if (subs_.empty() || records.empty()) return;
  const uint64_t now = options_.now_ms();
  {
    StreamRegistryBusy busy(&busy_);
    for (auto& [id, sub] : subs_) {
      if (!sub->gone) Deliver(sub.get(), records, now);
    }
  }
  Sweep();
}

void StreamRegistry::PublishTo(StreamId id, std::string_view records) {
  auto it = subs_.find(id);
  if (it == subs_.end() || it->second->gone || records.empty()) return;
  Subscription* sub = it->second.get();
  {
    StreamRegistryBusy busy(&busy_);
    // A peer's notice (its drops for this subscription) reaches the client whatever the filter;
    // it goes ahead of the batch it arrived with.
    std::string rest, notices;
    if (records.find(kNoticeMarker) != std::string_view::npos) {
      for (std::string_view left = records; !left.empty();) {
        size_t lf = left.find('\n');
        std::string_view line = left.substr(0, lf == std::string_view::npos ? left.size() : lf + 1);
        left.remove_prefix(line.size());
        if (line.size() > Ulid::kTextSize && line.substr(Ulid::kTextSize, kNoticeMarker.size()) == kNoticeMarker) {
          AppendFormatted(line, sub->spec.format, &notices);
        } else {
          rest.append(line);
        }
      }
      records = rest;
    }
    if (!notices.empty()) sub->response->Write(std::move(notices));
    if (!sub->gone && !records.empty()) Deliver(sub, records, options_.now_ms());
  }
  Sweep();
}

void StreamRegistry::Deliver(Subscription* sub, std::string_view records, uint64_t now) {
  static const UlidTextRange kAll(Ulid(), Ulid::Max());
  thread_local std::vector<RecordSpan> spans;
  spans.clear();
  sub->matcher->MatchBlock(records, kAll, &spans);
  if (spans.empty()) return;
  sub->Expire(now, options_.max_dedup_entries);

  std::string out;
  const size_t order_before = sub->order.size();
  uint64_t n = 0, dups = 0;
  for (const RecordSpan& s : spans) {
    std::string_view rec = records.substr(s.offset, s.length);
    if (auto ulid = Ulid::Parse(rec.substr(0, Ulid::kTextSize))) {
      if (!sub->seen.insert(*ulid).second) {
        ++dups;
        continue;
      }
      sub->order.emplace_back(now, *ulid);
    }
    AppendFormatted(rec, sub->spec.format, &out);
    ++n;
  }
  duplicates_->Inc(dups);
  if (n == 0) return;

  HttpResponse* resp = sub->response.get();
  // Resumes when the queue is down to a sixteenth of the bound (256 KiB of 4 MiB, HttpResponse's
  // low-water mark, where the drain callback resumes too).
  if (sub->lagging && resp->buffered_bytes() <= options_.max_buffered_bytes / 16) {
    Resume(sub);
    if (sub->gone) return;
  }
  // An idle response always takes a batch, so the bound is soft by one batch and a drain
  // callback is always due while lagging.
  const size_t buffered = resp->buffered_bytes();
  const bool over_budget = options_.memory_budget != nullptr && buffered > 0 &&
                           options_.memory_budget->used() + out.size() > options_.memory_budget->limit();
  if (sub->lagging || over_budget || (buffered > 0 && buffered + out.size() > options_.max_buffered_bytes)) {
    sub->lagging = true;
    sub->unreported_drops += n;
    dropped_->Inc(n);
    // Not delivered: forget them, so a copy from another source may still fill the gap.
    while (sub->order.size() > order_before) {
      sub->seen.erase(sub->order.back().second);
      sub->order.pop_back();
    }
    return;
  }
  delivered_->Inc(n);
  delivered_bytes_->Inc(out.size());
  resp->Write(std::move(out));  // last: may close the response and unsubscribe
}

void StreamRegistry::Resume(Subscription* sub) {
  sub->lagging = false;
  if (sub->unreported_drops == 0) return;
  std::string notice = Ulid::MinAt(options_.wall_ms()).ToString();
  notice += ' ';
  notice += kNoticeTopic;
  notice += " dropped " + std::to_string(sub->unreported_drops) +
            " records: this client read too slowly (more than " + HumanBytes(options_.max_buffered_bytes) +
            " behind)\n";
  sub->unreported_drops = 0;
  std::string out;
  AppendFormatted(notice, sub->spec.format, &out);
  sub->response->Write(std::move(out));  // may close the response: the caller is busy
}

}  // namespace oklog

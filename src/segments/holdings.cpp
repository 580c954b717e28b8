#include "segments/holdings.h"

#include <msgpack.hpp>

#include <algorithm>
#include <future>
#include <random>

#include "common/log.h"
#include "common/msgpack_pack.h"
#include "segments/record_merge.h"
#include "segments/segment_messages.h"
#include "segments/segment_rpc.h"
#include "segments/store_log.h"

namespace oklog {
namespace {

const msgpack::unpack_limit kLimit(/*array=*/kMaxHoldingsEntries, /*map=*/0, /*str=*/0, /*bin=*/16, /*ext=*/0,
                                   /*depth=*/3);

bool ReadBatch(const msgpack::object& o, uint32_t n, BatchId* b, uint64_t* records) {
  const msgpack::object* e = Fields(o, n);
  if (e == nullptr || !ReadUlid(e[0], &b->low) || !ReadUlid(e[1], &b->high) || b->high < b->low) return false;
  return records == nullptr || ReadUint(e[2], UINT64_MAX, records);
}

uint64_t RandomEpoch() {
  std::random_device rd;
  uint64_t e = (uint64_t{rd()} << 32) ^ rd() ^ NowUnixMs();
  return e == 0 ? 1 : e;
}

std::string LogLine(bool add, const BatchId& b, uint64_t records) {
  std::string s = add ? "+ " : "- ";
  s += b.low.ToString();
  s += ' ';
  s += b.high.ToString();
  if (add) s += ' ' + std::to_string(records);
  s += '\n';
  return s;
}

// Batches of `m` overlapping [from, to] (low <= to and high >= from), given the longest span.
template <typename F>
void ForOverlapping(const std::map<BatchId, uint64_t>& m, const Ulid& from, const Ulid& to, uint64_t max_span_ms, F f) {
  const uint64_t start_ms = from.unix_ms() > max_span_ms ? from.unix_ms() - max_span_ms : 0;
  for (auto it = m.lower_bound(BatchId{Ulid::MinAt(start_ms), Ulid()}); it != m.end() && it->first.low <= to; ++it)
    if (it->first.high >= from) f(it->first, it->second);
}

}  // namespace

// ---- messages ----

std::string EncodeHoldingsPull(uint64_t epoch, uint64_t version) {
  msgpack::sbuffer buf(32);
  Packer pk(buf);
  pk.pack_array(3);
  pk.pack_uint32(kHoldingsMessagesVersion);
  pk.pack_uint64(epoch);
  pk.pack_uint64(version);
  return std::string(buf.data(), buf.size());
}

Result<std::pair<uint64_t, uint64_t>> DecodeHoldingsPull(std::string_view body) {
  try {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(OpenVersioned(body, kLimit, 3, kHoldingsMessagesVersion, "holdings.pull request", &oh, &f));
    std::pair<uint64_t, uint64_t> r;
    if (!ReadUint(f[1], UINT64_MAX, &r.first) || !ReadUint(f[2], UINT64_MAX, &r.second))
      return Status::Corruption("holdings.pull request: fields");
    return r;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("holdings.pull request: ") + e.what());
  }
}

std::string EncodeHoldingsDelta(const HoldingsDelta& d) {
  msgpack::sbuffer buf(64 + 40 * (d.add.size() + d.drop.size()));
  Packer pk(buf);
  pk.pack_array(6);
  pk.pack_uint32(kHoldingsMessagesVersion);
  pk.pack_uint64(d.epoch);
  pk.pack_uint64(d.version);
  if (d.full) {
    pk.pack_true();
  } else {
    pk.pack_false();
  }
  pk.pack_array(static_cast<uint32_t>(d.add.size()));
  for (const auto& [b, n] : d.add) {
    pk.pack_array(3);
    PackUlid(pk, b.low);
    PackUlid(pk, b.high);
    pk.pack_uint64(n);
  }
  pk.pack_array(static_cast<uint32_t>(d.drop.size()));
  for (const BatchId& b : d.drop) {
    pk.pack_array(2);
    PackUlid(pk, b.low);
    PackUlid(pk, b.high);
  }
  return std::string(buf.data(), buf.size());
}

Result<HoldingsDelta> DecodeHoldingsDelta(std::string_view body) {
  try {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(OpenVersioned(body, kLimit, 6, kHoldingsMessagesVersion, "holdings.pull answer", &oh, &f));
    HoldingsDelta d;
    if (!ReadUint(f[1], UINT64_MAX, &d.epoch) || !ReadUint(f[2], UINT64_MAX, &d.version) ||
        f[3].type != msgpack::type::BOOLEAN)
      return Status::Corruption("holdings.pull answer: fields");
    d.full = f[3].via.boolean;
    if (f[4].type != msgpack::type::ARRAY || f[5].type != msgpack::type::ARRAY ||
        size_t{f[4].via.array.size} + f[5].via.array.size > kMaxHoldingsEntries)
      return Status::Corruption("holdings.pull answer: lists");
    d.add.resize(f[4].via.array.size);
    for (size_t i = 0; i < d.add.size(); ++i)
      if (!ReadBatch(f[4].via.array.ptr[i], 3, &d.add[i].first, &d.add[i].second))
        return Status::Corruption("holdings.pull answer: added batch " + std::to_string(i));
    d.drop.resize(f[5].via.array.size);
    for (size_t i = 0; i < d.drop.size(); ++i)
      if (!ReadBatch(f[5].via.array.ptr[i], 2, &d.drop[i], nullptr))
        return Status::Corruption("holdings.pull answer: dropped batch " + std::to_string(i));
    return d;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("holdings.pull answer: ") + e.what());
  }
}

// ---- placement ----

BatchId BucketRange(uint64_t bucket, uint64_t bucket_ms) {
  return {Ulid::MinAt(bucket * bucket_ms), Ulid::MaxAt((bucket + 1) * bucket_ms - 1)};
}

uint64_t PlacementRank(std::string_view store, uint64_t bucket) {
  auto mix = [](uint64_t x) {  // splitmix64's finaliser
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the name
  for (unsigned char c : store) h = (h ^ c) * 1099511628211ull;
  return mix(h ^ mix(bucket + 0x9e3779b97f4a7c15ull));
}

std::string EncodeSegmentCopy(const BatchClaims& claims, std::string_view file) {
  msgpack::sbuffer buf(64 + 40 * claims.size());
  Packer pk(buf);
  pk.pack_array(2);
  pk.pack_uint32(kHoldingsMessagesVersion);
  pk.pack_array(static_cast<uint32_t>(claims.size()));
  for (const auto& [b, n] : claims) {
    pk.pack_array(3);
    PackUlid(pk, b.low);
    PackUlid(pk, b.high);
    pk.pack_uint64(n);
  }
  std::string out;
  out.reserve(buf.size() + file.size());
  out.append(buf.data(), buf.size());
  out.append(file);
  return out;
}

Result<SegmentCopy> DecodeSegmentCopy(std::string_view body) {
  try {
    size_t off = 0;
    msgpack::object_handle oh = msgpack::unpack(body.data(), body.size(), off, nullptr, nullptr, kLimit);
    const msgpack::object* f = Fields(oh.get(), 2);
    uint64_t v = 0;
    if (f == nullptr || !ReadUint(f[0], UINT32_MAX, &v) || v != kHoldingsMessagesVersion)
      return Status::Corruption("segment.copy: not a version 1 header");
    if (f[1].type != msgpack::type::ARRAY) return Status::Corruption("segment.copy: claims");
    SegmentCopy c;
    c.claims.resize(f[1].via.array.size);
    for (size_t i = 0; i < c.claims.size(); ++i)
      if (!ReadBatch(f[1].via.array.ptr[i], 3, &c.claims[i].first, &c.claims[i].second))
        return Status::Corruption("segment.copy: claim " + std::to_string(i));
    c.file = body.substr(off);
    if (c.file.empty()) return Status::Corruption("segment.copy: no segment file");
    return c;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("segment.copy: ") + e.what());
  }
}

// ---- Holdings ----

Holdings::Holdings(Registry* m) : epoch_(RandomEpoch()) {
  batches_gauge_ = m->NewGauge("oklog_store_held_batches", "Replicated batches this store holds (its holdings).");
  log_errors_ = m->NewCounter("oklog_store_holdings_log_errors_total",
                              "holdings.log lines that could not be written or read (skipped).");
}

Holdings::~Holdings() = default;

Result<std::unique_ptr<Holdings>> Holdings::Open(Env* env, const std::string& dir, Registry* metrics) {
  std::unique_ptr<Holdings> h(new Holdings(metrics));
  Holdings* raw = h.get();
  OKLOG_ASSIGN_OR_RETURN(h->log_, LineLog::Open(env, dir + "/holdings.log", h->log_errors_, [raw](std::string_view line) {
    const bool add = line.starts_with("+ ");
    if ((!add && !line.starts_with("- ")) || line.size() < 2 + 2 * Ulid::kTextSize + 1) return false;
    auto low = Ulid::Parse(line.substr(2, Ulid::kTextSize));
    auto high = Ulid::Parse(line.substr(3 + Ulid::kTextSize, Ulid::kTextSize));
    if (!low || !high || *high < *low) return false;
    BatchId b{*low, *high};
    if (!add) {
      raw->batches_.erase(b);
      return true;
    }
    std::string_view n = line.substr(std::min(line.size(), size_t{4 + 2 * Ulid::kTextSize}));
    uint64_t records = 0;
    bool ok = !n.empty() && n.size() <= 19;
    for (char c : n) ok = ok && c >= '0' && c <= '9';
    if (!ok) return false;
    for (char c : n) records = records * 10 + static_cast<uint64_t>(c - '0');
    raw->batches_[b] = records;
    return true;
  }));
  // The live entries only, then appends to the same file. Nothing held and no file: the file is
  // made by the first Add. A rewrite that fails (a full disk at start) leaves the old file as it
  // was and this run's changes in memory only: conservative, as a lost append.
  std::string all;
  for (const auto& [b, n] : h->batches_) all += LogLine(true, b, n);
  h->log_->Rewrite(all, "holdings");
  h->batches_gauge_->Set(static_cast<double>(h->batches_.size()));
  return h;
}

void Holdings::AppendLine(const std::string& line) { log_->Append(line, "the batch is held all the same"); }

void Holdings::Record(bool add, const BatchId& b, uint64_t records) {
  changes_.push_back({++version_, add, b, records});
  if (changes_.size() > 2 * kMaxHoldingsEntries)
    changes_.erase(changes_.begin(), changes_.begin() + static_cast<std::ptrdiff_t>(changes_.size() - kMaxHoldingsEntries));
  AppendLine(LogLine(add, b, records));
}

void Holdings::Add(const BatchId& b, uint64_t records) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = batches_.emplace(b, records);
  if (!inserted) return;
  Record(true, b, records);
  batches_gauge_->Set(static_cast<double>(batches_.size()));
}

void Holdings::AddAll(const BatchClaims& batches) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [b, n] : batches)
    if (batches_.emplace(b, n).second) Record(true, b, n);
  batches_gauge_->Set(static_cast<double>(batches_.size()));
}

size_t Holdings::Drop(const std::vector<BatchId>& batches) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const BatchId& b : batches)
    if (batches_.erase(b)) {
      Record(false, b, 0);
      ++n;
    }
  batches_gauge_->Set(static_cast<double>(batches_.size()));
  return n;
}

size_t Holdings::DropBelow(const Ulid& floor) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (auto it = batches_.begin(); it != batches_.end() && it->first.low < floor;) {
    if (it->first.high < floor) {
      Record(false, it->first, 0);
      it = batches_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  batches_gauge_->Set(static_cast<double>(batches_.size()));
  return n;
}

void Holdings::Retain(const std::function<bool(const BatchId&)>& held) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = batches_.begin(); it != batches_.end();) {
    if (held(it->first)) {
      ++it;
      continue;
    }
    Record(false, it->first, 0);
    it = batches_.erase(it);
  }
  batches_gauge_->Set(static_cast<double>(batches_.size()));
}

bool Holdings::Has(const BatchId& b) const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_.count(b) != 0;
}

BatchClaims Holdings::Within(const Ulid& low, const Ulid& high) const {
  std::lock_guard<std::mutex> lock(mu_);
  BatchClaims out;
  for (auto it = batches_.lower_bound(BatchId{low, Ulid()}); it != batches_.end() && it->first.low <= high; ++it)
    if (it->first.high <= high) out.emplace_back(it->first, it->second);
  return out;
}

std::vector<BatchId> Holdings::Overlapping(const Ulid& low, const Ulid& high) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<BatchId> out;
  for (auto it = batches_.begin(); it != batches_.end() && it->first.low <= high; ++it)
    if (it->first.high >= low) out.push_back(it->first);
  return out;
}

HoldingsDelta Holdings::Since(uint64_t epoch, uint64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  HoldingsDelta d;
  d.epoch = epoch_;
  d.version = version_;
  const bool reachable = epoch == epoch_ && version <= version_ &&
                         (changes_.empty() ? version == version_ : changes_.front().version <= version + 1);
  if (!reachable) {
    d.full = true;
    for (const auto& [b, n] : batches_) {
      if (d.add.size() == kMaxHoldingsEntries) break;  // (kept bounded; more than a million batches is a misconfiguration)
      d.add.emplace_back(b, n);
    }
    return d;
  }
  auto it = std::upper_bound(changes_.begin(), changes_.end(), version,
                             [](uint64_t v, const Change& c) { return v < c.version; });
  for (; it != changes_.end(); ++it) {
    if (d.add.size() + d.drop.size() == kMaxHoldingsEntries) {
      d.version = it->version - 1;  // the rest next time
      break;
    }
    if (it->add) {
      d.add.emplace_back(it->batch, it->records);
    } else {
      d.drop.push_back(it->batch);
    }
  }
  return d;
}

std::vector<std::pair<BatchId, uint64_t>> Holdings::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {batches_.begin(), batches_.end()};
}

size_t Holdings::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_.size();
}

void ServeHoldings(Holdings* own, rpc::RpcServer* server) {
  server->Handle(kHoldingsPull, [own](std::shared_ptr<rpc::ServerCall> c) {
    Result<std::pair<uint64_t, uint64_t>> req = DecodeHoldingsPull(c->body());
    if (!req.ok()) return c->Respond(Status::InvalidArgument(req.status().message()));
    c->Respond(Status::Ok(), EncodeHoldingsDelta(own->Since(req->first, req->second)));
  });
}

// ---- HoldingsExchange ----

std::unique_ptr<HoldingsExchange> HoldingsExchange::Start(rpc::RpcBridge* bridge,
                                                          std::function<std::vector<HoldingsPeer>()> peers,
                                                          StoreLog* store, Options options, Registry* m) {
  std::unique_ptr<HoldingsExchange> x(new HoldingsExchange);
  x->bridge_ = bridge;
  x->peers_ = std::move(peers);
  x->store_ = store;
  x->own_ = store->holdings();
  x->options_ = options;
  x->pulls_ = m->NewCounter("oklog_store_holdings_pulls_total", "holdings.pull answers applied from store peers.");
  x->pull_errors_ = m->NewCounter("oklog_store_holdings_pull_errors_total",
                                  "holdings.pull calls that failed or answered what did not decode.");
  x->under_replicated_batches_ = m->NewGauge(
      "oklog_store_under_replicated_batches",
      "Batches this store holds that fewer live stores than the replication factor are known to hold.");
  x->under_replicated_records_ = m->NewGauge("oklog_store_under_replicated_records",
                                             "Records of the batches in oklog_store_under_replicated_batches.");
  x->under_replicated_bytes_ = m->NewGauge(
      "oklog_store_under_replicated_bytes",
      "Segment file bytes of oklog_store_under_replicated_records, estimated at this store's file bytes per held record.");
  x->known_stores_ = m->NewGauge("oklog_store_holdings_known_stores",
                                 "Other stores whose holdings this store keeps (dead and left ones included).");
  x->repaired_batches_ = m->NewCounter("oklog_store_repaired_batches_total",
                                       "Under-replicated batches this store copied to another live store.");
  x->repaired_bytes_ = m->NewCounter("oklog_store_repaired_bytes_total", "Segment file bytes sent by repair copies.");
  x->repair_errors_ = m->NewCounter("oklog_store_repair_errors_total", "Repair copies that failed (tried again later).");
  x->repair_lag_ = m->NewGauge("oklog_store_repair_lag_seconds",
                               "How long the oldest under-replicated batch of this store has been so (0: none).");
  x->rebalanced_batches_ = m->NewCounter("oklog_store_rebalanced_batches_total",
                                         "Batches this store copied to a store below the mean load (rebalance).");
  x->rebalanced_bytes_ = m->NewCounter("oklog_store_rebalanced_bytes_total", "Segment file bytes sent by rebalance copies.");
  x->dropped_batches_ = m->NewCounter("oklog_store_dropped_copies_total",
                                      "Batches this store removed because N lower-ranked alive stores hold them.");
  x->dropped_records_ = m->NewCounter("oklog_store_dropped_copy_records_total",
                                      "Records of the batches in oklog_store_dropped_copies_total.");
  x->drops_cancelled_ = m->NewCounter("oklog_store_copy_drops_cancelled_total",
                                      "Drops of copies beyond N cancelled before the rewrite (the batches are held again).");
  x->held_records_ = m->NewGauge("oklog_store_held_records", "Records of the replicated batches this store holds.");
  x->thread_ = std::thread([p = x.get()] { p->Run(); });
  return x;
}

HoldingsExchange::~HoldingsExchange() { Join(); }

void HoldingsExchange::Stop() {
  {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void HoldingsExchange::Join() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void HoldingsExchange::Run() {
  std::mt19937_64 rng(own_->epoch());
  while (!stop_) {
    PullOnce();
    // A jittered interval (0.75x..1.25x), so that stores do not pull in lock step.
    const auto base = options_.interval.count();
    std::chrono::milliseconds wait(base * 3 / 4 + static_cast<int64_t>(rng() % static_cast<uint64_t>(base / 2 + 1)));
    std::unique_lock<std::mutex> lock(sleep_mu_);
    cv_.wait_for(lock, wait, [&] { return stop_.load(); });
  }
}

void HoldingsExchange::PullOnce() {
  std::lock_guard<std::mutex> round(run_mu_);
  std::vector<HoldingsPeer> peers;
  if (!bridge_->RunOnLoop([&] { peers = peers_(); }).ok()) return;
  struct Pending {
    std::string name;
    std::future<Result<std::string>> answer;
  };
  std::vector<Pending> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const HoldingsPeer& p : peers) {
      if (p.is_self) {
        self_ = p.name;
        continue;
      }
      Cache& c = caches_[p.name];
      c.live = p.live;
      if (p.live)
        pending.push_back({p.name, bridge_->CallAsync(p.addr, kHoldingsPull, EncodeHoldingsPull(c.epoch, c.version),
                                                      options_.rpc_timeout)});
    }
  }
  auto log = Logger("store");
  for (Pending& p : pending) {
    Result<std::string> r = p.answer.get();
    Result<HoldingsDelta> d = r.ok() ? DecodeHoldingsDelta(*r) : Result<HoldingsDelta>(r.status());
    if (!d.ok()) {
      pull_errors_->Inc();
      log->debug("holdings.pull on {}: {}", p.name, d.status().ToString());
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    Cache& c = caches_[p.name];
    if (d->full || d->epoch != c.epoch) c.batches.clear();
    for (const auto& [b, n] : d->add) {
      c.batches[b] = n;
      c.max_span_ms = std::max(c.max_span_ms, b.high.unix_ms() - b.low.unix_ms());
    }
    for (const BatchId& b : d->drop) c.batches.erase(b);
    c.epoch = d->epoch;
    c.version = d->version;
    c.pulled = true;
    pulls_->Inc();
  }
  last_peers_ = peers;
  Refresh(peers);
  Repair();
}

bool HoldingsExchange::Buckets::Fixed(uint64_t bucket) const {
  auto it = std::upper_bound(spans.begin(), spans.end(), std::make_pair(bucket, UINT64_MAX));
  return it != spans.begin() && std::prev(it)->second >= bucket;
}

void HoldingsExchange::Refresh(const std::vector<HoldingsPeer>& peers) {
  std::vector<std::pair<uint64_t, BatchClaims>> drops;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (options_.retention.count() > 0) {
      const uint64_t now = NowUnixMs(), age = static_cast<uint64_t>(options_.retention.count());
      const Ulid floor = Ulid::MinAt(now > age ? now - age : 0);
      for (auto& [name, c] : caches_)
        for (auto it = c.batches.begin(); it != c.batches.end() && it->first.low < floor;)
          it = it->first.high < floor ? c.batches.erase(it) : std::next(it);
    }
    known_stores_->Set(static_cast<double>(caches_.size()));
    std::map<std::string, std::string> live;  // name -> addr, self excluded
    alive_.clear();
    for (const HoldingsPeer& p : peers) {
      if (!p.live || p.is_self) continue;
      live[p.name] = p.addr;
      caches_[p.name].full = p.full;
      if (!p.suspect) alive_.insert(p.name);
    }
    const auto now = std::chrono::steady_clock::now();
    uint64_t batches = 0, records = 0, held = 0;
    std::map<BatchId, std::chrono::steady_clock::time_point> under;
    due_.clear();
    Buckets own;
    const uint64_t bucket_ms = options_.bucket_ms;
    const BatchClaims snapshot = own_->Snapshot();
    for (const auto& [b, n] : snapshot) {
      held += n;
      const uint64_t lo = PlacementBucket(b.low, bucket_ms), hi = PlacementBucket(b.high, bucket_ms);
      if (lo == hi) {
        own.within[lo].emplace_back(b, n);
      } else if (!own.spans.empty() && own.spans.back().second + 1 >= lo) {
        own.spans.back().second = std::max(own.spans.back().second, hi);  // snapshot is sorted by low
      } else {
        own.spans.emplace_back(lo, hi);
      }
    }
    held_records_->Set(static_cast<double>(held));
    std::map<std::pair<BatchId, std::string>, size_t> unit_of;  // (range, target) -> index in due_
    for (const auto& [b, n] : snapshot) {
      std::vector<std::string> holders = {self_};
      for (const auto& [name, c] : caches_)
        if (live.count(name) && c.batches.count(b)) holders.push_back(name);
      if (holders.size() >= options_.replication_factor) continue;
      ++batches;
      records += n;
      auto it = under_since_.find(b);
      const auto since = it == under_since_.end() ? now : it->second;
      under[b] = since;
      // One repairer per batch: the first live holder by name. Targets: live stores lacking it
      // whose disk is not full, lowest rank in its bucket first (where rebalance would put it).
      if (options_.repair_rate == 0 || now - since < options_.repair_delay ||
          *std::min_element(holders.begin(), holders.end()) != self_)
        continue;
      const uint64_t bucket = PlacementBucket(b.low, bucket_ms);
      const bool whole_bucket = bucket == PlacementBucket(b.high, bucket_ms) && !own.Fixed(bucket);
      std::vector<std::pair<uint64_t, std::string>> targets;
      for (const auto& [name, addr] : live)
        if (std::find(holders.begin(), holders.end(), name) == holders.end() && !caches_[name].full)
          targets.emplace_back(PlacementRank(name, bucket), name);
      std::sort(targets.begin(), targets.end());
      for (size_t i = 0; i < targets.size() && holders.size() + i < options_.replication_factor; ++i) {
        Copy c;
        c.range = whole_bucket ? BucketRange(bucket, bucket_ms) : b;
        c.name = targets[i].second;
        c.addr = live[c.name];
        auto [slot, fresh] = unit_of.emplace(std::make_pair(c.range, c.name), due_.size());
        if (!fresh) continue;  // another batch of the bucket already sends it there
        c.claims = whole_bucket ? own.within[bucket] : BatchClaims{{b, n}};
        c.whole_bucket = whole_bucket;
        due_.push_back(std::move(c));
      }
    }
    under_since_ = std::move(under);
    double lag = 0;
    for (const auto& [b, t] : under_since_) lag = std::max(lag, std::chrono::duration<double>(now - t).count());
    repair_lag_->Set(lag);
    under_replicated_batches_->Set(static_cast<double>(batches));
    under_replicated_records_->Set(static_cast<double>(records));
    under_replicated_bytes_->Set(held == 0 ? 0.0
                                           : static_cast<double>(records) * static_cast<double>(store_->file_bytes()) /
                                                 static_cast<double>(held));
    if (!self_.empty()) {
      DecideDrops(own, &drops);
      // Repairs first: no rebalance in a round that has copies to repair (a batch that is merely
      // young, its other copy not pulled yet, does not count: ingest never stops).
      if (due_.empty() && options_.rebalance && options_.repair_rate > 0) {
        DecideConsolidate(own);
        DecideRebalance(own);
      }
    }
  }
  StartDrops(std::move(drops));
}

size_t HoldingsExchange::LowerHolders(const BatchId& b, uint64_t bucket, const std::string& except) const {
  const uint64_t mine = PlacementRank(self_, bucket);
  size_t n = 0;
  for (const std::string& name : alive_) {
    if (name == except || PlacementRank(name, bucket) >= mine) continue;
    auto it = caches_.find(name);
    if (it != caches_.end() && it->second.pulled && it->second.batches.count(b)) ++n;
  }
  return n;
}

namespace {
// Whether a bucket ended at least settle_age ago.
bool Settled(uint64_t bucket, uint64_t bucket_ms, std::chrono::milliseconds settle_age) {
  const uint64_t end_ms = (bucket + 1) * bucket_ms, now = NowUnixMs();
  return now >= end_ms && now - end_ms >= static_cast<uint64_t>(settle_age.count());
}
}  // namespace

void HoldingsExchange::DecideDrops(const Buckets& own,
                                   std::vector<std::pair<uint64_t, BatchClaims>>* drops) {
  if (!options_.drop) return;
  for (const auto& [bucket, claims] : own.within) {
    if (own.Fixed(bucket) || dropping_.count(bucket) || !Settled(bucket, options_.bucket_ms, options_.settle_age)) continue;
    bool extra = true;
    for (const auto& [b, n] : claims) extra = extra && LowerHolders(b, bucket, "") >= options_.replication_factor;
    if (extra) drops->emplace_back(bucket, claims);
  }
}

void HoldingsExchange::DecideRebalance(const Buckets& own) {
  // Loads, in records, of this store and of the alive stores whose holdings are known.
  uint64_t self_load = 0;
  for (const auto& [bucket, claims] : own.within)
    for (const auto& [b, n] : claims) self_load += n;
  std::map<std::string, double> load;
  double total = 0;
  for (const std::string& name : alive_) {
    const Cache& c = caches_.at(name);
    if (!c.pulled) return;  // not known yet: wait for its first answer
    uint64_t l = 0;
    for (const auto& [b, n] : c.batches) l += n;
    load[name] = static_cast<double>(l);
    total += static_cast<double>(l);
  }
  if (load.empty()) return;
  total += static_cast<double>(self_load);
  const double mean = total / static_cast<double>(load.size() + 1);
  if (static_cast<double>(self_load) <= mean * 1.05) return;
  size_t movers = 1;
  for (const auto& [name, l] : load) movers += l > mean * 1.05;
  // Room at each store below the mean, shared among the movers.
  std::map<std::string, double> room;
  for (const auto& [name, l] : load)
    if (l < mean * 0.95 && !caches_.at(name).full) room[name] = (mean - l) / static_cast<double>(movers);
  if (room.empty()) return;
  double excess = static_cast<double>(self_load) - mean;
  for (auto it = own.within.rbegin(); it != own.within.rend() && excess > 0 && due_.size() < 64; ++it) {
    const auto& [bucket, claims] = *it;
    if (own.Fixed(bucket) || dropping_.count(bucket) || !Settled(bucket, options_.bucket_ms, options_.settle_age)) continue;
    uint64_t recs = 0;
    for (const auto& [b, n] : claims) recs += n;
    std::map<std::string, double> fits;  // room for half the bucket at least
    for (const auto& [name, r] : room)
      if (r >= static_cast<double>(recs) / 2) fits[name] = r;
    const std::string best = CopyTarget(bucket, claims, fits);
    if (best.empty()) continue;
    AddBucketCopy(bucket, claims, best);
    room[best] -= static_cast<double>(recs);
    excess -= static_cast<double>(recs);
  }
}

std::string HoldingsExchange::CopyTarget(uint64_t bucket, const BatchClaims& claims,
                                        const std::map<std::string, double>& room) const {
  const uint64_t mine = PlacementRank(self_, bucket);
  std::string best;
  for (const auto& [name, r] : room) {
    if (PlacementRank(name, bucket) >= mine) continue;
    // It lacks one batch at least (the whole bucket goes: what it has are duplicates), and
    // every batch would then have N holders ranked before this store.
    const Cache& c = caches_.at(name);
    bool lacks = false, fits = true;
    for (const auto& [b, n] : claims) {
      lacks = lacks || !c.batches.count(b);
      fits = fits && LowerHolders(b, bucket, name) + 1 >= options_.replication_factor;
    }
    if (fits && lacks && (best.empty() || r > room.at(best))) best = name;
  }
  return best;
}

void HoldingsExchange::AddBucketCopy(uint64_t bucket, const BatchClaims& claims, const std::string& target) {
  Copy c;
  c.range = BucketRange(bucket, options_.bucket_ms);
  for (const Copy& d : due_)
    if (d.range == c.range) return;  // one copy of a bucket a round
  c.claims = claims;
  c.name = target;
  for (const HoldingsPeer& p : last_peers_)
    if (p.name == target) c.addr = p.addr;
  c.rebalance = true;
  c.whole_bucket = true;
  due_.push_back(std::move(c));
}

void HoldingsExchange::DecideConsolidate(const Buckets& own) {
  std::map<std::string, double> room;  // any alive, known store with room on its disk; least held first
  for (const std::string& name : alive_) {
    const Cache& c = caches_.at(name);
    if (!c.pulled || c.full) continue;
    uint64_t l = 0;
    for (const auto& [b, n] : c.batches) l += n;
    room[name] = -static_cast<double>(l);
  }
  const uint64_t n_copies = options_.replication_factor;
  for (const auto& [bucket, claims] : own.within) {
    if (due_.size() >= 64) break;
    if (own.Fixed(bucket) || dropping_.count(bucket) || !Settled(bucket, options_.bucket_ms, options_.settle_age)) continue;
    bool extra = false, droppable = true;
    for (const auto& [b, n] : claims) {
      const size_t lower = LowerHolders(b, bucket, "");
      droppable = droppable && lower >= n_copies;
      extra = extra || lower >= n_copies;  // last of more than N alive holders
    }
    if (!extra || droppable) continue;  // nothing beyond N here, or the drop rule takes it
    const std::string target = CopyTarget(bucket, claims, room);
    if (!target.empty()) AddBucketCopy(bucket, claims, target);
  }
}

void HoldingsExchange::StartDrops(std::vector<std::pair<uint64_t, BatchClaims>> drops) {
  auto log = Logger("store");
  for (auto& drop : drops) {
    // Named references, not a structured binding: the lambdas below capture them, which clang
    // 14 cannot do with structured bindings (C++20 P1091).
    const uint64_t bucket = drop.first;
    BatchClaims& claims = drop.second;
    std::vector<BatchId> ids;
    uint64_t records = 0;
    for (const auto& [b, n] : claims) {
      ids.push_back(b);
      records += n;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      dropping_.insert(bucket);
    }
    own_->Drop(ids);  // peers stop counting this copy from their next pull
    const BatchId range = BucketRange(bucket, options_.bucket_ms);
    log->info("dropping bucket {}..{}: {} batch(es), {} records, each on {} lower-ranked alive store(s)",
              range.low.ToString(), range.high.ToString(), ids.size(), records, options_.replication_factor);
    RangeDrop d;
    d.low = range.low;
    d.high = range.high;
    d.max_records = records;
    const auto grace = options_.drop_grace.count() > 0 ? options_.drop_grace : 3 * options_.interval;
    d.not_before = std::chrono::steady_clock::now() + grace;
    d.still_wanted = [this, bucket, ids] {
      std::lock_guard<std::mutex> lock(mu_);
      for (const BatchId& b : ids)
        if (own_->Has(b) || LowerHolders(b, bucket, "") < options_.replication_factor) return false;
      return true;
    };
    d.done = [this, bucket, ids, claims, records](const Status& s) {
      if (s.ok()) {
        // A copy of these batches that arrived during the rewrite noted them again, and its file
        // may have been rewritten away with the rest: not claimed, to be safe (an unclaimed
        // extra copy at worst).
        own_->Drop(ids);
        dropped_batches_->Inc(claims.size());
        dropped_records_->Inc(records);
      } else {
        own_->AddAll(claims);  // the records are all still here
        drops_cancelled_->Inc();
        Logger("store")->info("drop of bucket {} cancelled ({}); its {} batch(es) are held again", bucket,
                              s.ToString(), claims.size());
      }
      std::lock_guard<std::mutex> lock(mu_);
      dropping_.erase(bucket);
    };
    options_.drop(std::move(d));
  }
}

void HoldingsExchange::Repair() {
  std::vector<Copy> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    due.swap(due_);
  }
  if (due.empty()) return;
  // The budget: the rate times the time since the last round (at most two intervals' worth).
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::min(std::chrono::duration<double>(now - last_repair_).count(),
                               2.0 * std::chrono::duration<double>(options_.interval).count());
  last_repair_ = now;
  double budget = std::max(1.0, secs) * static_cast<double>(options_.repair_rate);
  auto log = Logger("store");
  for (Copy& c : due) {
    if (stop_ || budget <= 0) break;
    // The bucket's batches now, taken before its records are read: a batch that came since the
    // decision goes along claimed (not as records the receiver could not account for).
    if (c.whole_bucket) c.claims = own_->Within(c.range.low, c.range.high);
    if (c.claims.empty()) continue;  // dropped meanwhile
    const char* what = c.rebalance ? "rebalance" : "repair";
    Result<uint64_t> sent = CopyUnit(c);
    if (!sent.ok()) {
      repair_errors_->Inc();
      log->warn("{}: {}..{} to {}: {}", what, c.range.low.ToString(), c.range.high.ToString(), c.name,
                sent.status().ToString());
      continue;
    }
    budget -= static_cast<double>(*sent);
    (c.rebalance ? rebalanced_batches_ : repaired_batches_)->Inc(c.claims.size());
    (c.rebalance ? rebalanced_bytes_ : repaired_bytes_)->Inc(*sent);
    log->info("{}: {}..{} ({} batch(es), {} bytes) copied to {}", what, c.range.low.ToString(), c.range.high.ToString(),
              c.claims.size(), *sent, c.name);
    std::lock_guard<std::mutex> lock(mu_);
    Cache& held = caches_[c.name];  // it holds them now (it answered once stored; the next pull confirms)
    for (const auto& [b, n] : c.claims) {
      held.batches[b] = n;
      held.max_span_ms = std::max(held.max_span_ms, b.high.unix_ms() - b.low.unix_ms());
    }
  }
}

Result<uint64_t> HoldingsExchange::CopyUnit(const Copy& c) {
  const BatchId& b = c.range;
  // The records LOW..HIGH of every segment of this store.
  std::vector<std::string> blocks;
  std::vector<std::string_view> recs;
  for (const auto& seg : store_->Select(b.low, b.high)) {
    for (size_t i = 0; i < seg->blocks().size(); ++i) {
      const BlockInfo& bi = seg->blocks()[i];
      if (bi.last < b.low || bi.first > b.high || seg->BlockBad(i)) continue;  // a bad block's batches are not claimed
      blocks.emplace_back();
      Status read = seg->ReadBlock(i, &blocks.back());
      if (read.code() == Code::kCorruption) {
        // Found now: marked (its batches leave the holdings), and this copy's claims, decided
        // before, may name them; the next round decides again without them.
        store_->MarkBlockBad(*seg, i, read);
        return read;
      }
      OKLOG_RETURN_IF_ERROR(read);
    }
  }
  for (const std::string& text : blocks) {
    ParseStats ps;
    for (std::string_view r : ParseRecords(text, &ps)) {
      auto u = Ulid::ParseCanonical(r.data());
      if (u && *u >= b.low && *u <= b.high) recs.push_back(r);
    }
  }
  SortRecords(&recs);
  recs.erase(std::unique(recs.begin(), recs.end(),
                         [](std::string_view x, std::string_view y) { return x.substr(0, Ulid::kTextSize) == y.substr(0, Ulid::kTextSize); }),
             recs.end());
  if (recs.empty()) return Status::NotFound("no records of the range are left here");
  // One file per kCopyFileRawBytes of records (each fits an RPC message); the claims go with the
  // last, once the others are stored.
  constexpr uint64_t kCopyFileRawBytes = 24u << 20;
  uint64_t bytes = 0;
  for (size_t first = 0; first < recs.size();) {
    OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<SegmentEncoder> enc, SegmentEncoder::Create(store_->writer_options()));
    size_t i = first;
    for (; i < recs.size() && (i == first || enc->raw_bytes() < kCopyFileRawBytes); ++i) {
      Status s = enc->Append(recs[i]);
      if (s.code() == Code::kResourceExhausted && i > first) break;
      OKLOG_RETURN_IF_ERROR(s);
    }
    OKLOG_ASSIGN_OR_RETURN(SegmentImage image, enc->Finish());
    bytes += image.bytes.size();
    const bool last = i == recs.size();
    Result<std::string> r = bridge_->Call(c.addr, kSegmentCopy, EncodeSegmentCopy(last ? c.claims : BatchClaims{}, image.bytes),
                                          options_.rpc_timeout * 6);
    if (!r.ok()) return r.status();
    first = i;
  }
  return bytes;
}

bool HoldingsExchange::HeldByAny(const BatchId& b, const std::set<std::string>& stores) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& name : stores) {
    auto it = caches_.find(name);  // this store has no cache: it is never counted here
    if (it != caches_.end() && it->second.batches.count(b)) return true;
  }
  return false;
}

std::vector<MissingBatch> HoldingsExchange::Missing(const Ulid& from, const Ulid& to, const std::set<std::string>& asked,
                                                    size_t max, uint64_t* total) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<BatchId, MissingBatch> missing;
  for (const auto& entry : caches_) {
    const std::string& name = entry.first;  // captured below: no structured binding (clang 14)
    const auto& c = entry.second;
    if (asked.count(name)) continue;
    ForOverlapping(c.batches, from, to, c.max_span_ms, [&](const BatchId& b, uint64_t n) {
      if (own_->Has(b)) return;
      for (const std::string& a : asked) {
        auto it = caches_.find(a);
        if (it != caches_.end() && it->second.batches.count(b)) return;
      }
      MissingBatch& m = missing[b];
      m.batch = b;
      m.records = n;
      m.holders.push_back(name);
    });
  }
  *total = missing.size();
  std::vector<MissingBatch> out;
  for (auto& [b, m] : missing) {
    if (out.size() == max) break;
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace oklog

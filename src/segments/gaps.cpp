#include "segments/gaps.h"

#include <algorithm>
#include <string_view>

#include "common/log.h"

namespace oklog {
namespace {

std::string Range(const Ulid& low, const Ulid& high) { return low.ToString() + " " + high.ToString(); }

std::string AddLine(const Gap& g) {
  std::string s = "+ " + Range(g.low, g.high) + " " + std::to_string(g.records);
  for (const BatchId& b : g.batches) s += " " + Range(b.low, b.high);
  return s + "\n";
}

// Splits on single spaces.
std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos <= line.size()) {
    size_t sp = line.find(' ', pos);
    if (sp == std::string_view::npos) sp = line.size();
    out.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  return out;
}

bool ParseDecimal(std::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 19) return false;
  *v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    *v = *v * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

// One line of gaps.log into (kind, gap); false for a line that is not of the grammar.
bool ParseLine(std::string_view line, char* kind, Gap* g) {
  std::vector<std::string_view> f = Fields(line);
  if (f.size() < 3 || f[0].size() != 1) return false;
  *kind = f[0][0];
  auto low = Ulid::Parse(f[1]), high = Ulid::Parse(f[2]);
  if (!low || !high || *high < *low) return false;
  g->low = *low;
  g->high = *high;
  if (*kind == '=' || *kind == '-') return f.size() == 3;
  if (*kind != '+' || f.size() < 4 || (f.size() - 4) % 2 != 0 || !ParseDecimal(f[3], &g->records)) return false;
  for (size_t i = 4; i < f.size(); i += 2) {
    auto bl = Ulid::Parse(f[i]), bh = Ulid::Parse(f[i + 1]);
    if (!bl || !bh || *bh < *bl) return false;
    g->batches.push_back({*bl, *bh});
  }
  return true;
}

}  // namespace

Gaps::Gaps(Registry* m) {
  unhealed_gauge_ = m->NewGauge("oklog_store_data_gaps",
                                "Record ranges this store lost to bad blocks and has not got back (queries over them "
                                "answer 206).");
  log_errors_ = m->NewCounter("oklog_store_gaps_log_errors_total",
                              "gaps.log lines that could not be written or read (skipped).");
}

Gaps::~Gaps() = default;

Result<std::unique_ptr<Gaps>> Gaps::Open(Env* env, const std::string& dir, Registry* metrics) {
  std::unique_ptr<Gaps> g(new Gaps(metrics));
  Gaps* raw = g.get();
  OKLOG_ASSIGN_OR_RETURN(g->log_, LineLog::Open(env, dir + "/gaps.log", g->log_errors_, [raw](std::string_view line) {
    char kind = 0;
    Gap gap;
    if (!ParseLine(line, &kind, &gap)) return false;
    const auto key = std::make_pair(gap.low, gap.high);
    if (kind == '+') {
      raw->gaps_.emplace(key, std::move(gap));
    } else if (kind == '-') {
      raw->gaps_.erase(key);
    } else if (auto it = raw->gaps_.find(key); it != raw->gaps_.end()) {
      it->second.healed = true;
    }
    return true;
  }));
  // As holdings.log: the live entries only, then appends to the same file.
  std::string all;
  for (const auto& [key, gap] : g->gaps_) {
    all += AddLine(gap);
    if (gap.healed) all += "= " + Range(gap.low, gap.high) + "\n";
  }
  g->log_->Rewrite(all, "gaps");
  std::lock_guard<std::mutex> lock(g->mu_);
  g->UpdateGauge();
  return g;
}

void Gaps::AppendLine(const std::string& line) { log_->Append(line, "the gap is kept in memory"); }

void Gaps::UpdateGauge() {
  size_t n = 0;
  for (const auto& [key, gap] : gaps_) n += gap.healed ? 0 : 1;
  unhealed_gauge_->Set(static_cast<double>(n));
}

bool Gaps::Add(const Gap& g) {
  std::lock_guard<std::mutex> lock(mu_);
  Gap gap = g;
  gap.healed = false;
  if (!gaps_.emplace(std::make_pair(g.low, g.high), gap).second) return false;
  AppendLine(AddLine(gap));
  UpdateGauge();
  return true;
}

bool Gaps::Has(const Ulid& low, const Ulid& high) const {
  std::lock_guard<std::mutex> lock(mu_);
  return gaps_.count(std::make_pair(low, high)) != 0;
}

size_t Gaps::Heal(const std::function<bool(const BatchId&)>& held) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (auto& [key, gap] : gaps_) {
    if (gap.healed || gap.batches.empty() || !std::all_of(gap.batches.begin(), gap.batches.end(), held)) continue;
    gap.healed = true;
    AppendLine("= " + Range(gap.low, gap.high) + "\n");
    Logger("store")->info("gap {}..{} ({} records of a bad block) healed: its {} batch(es) are held here again",
                          gap.low.ToString(), gap.high.ToString(), gap.records, gap.batches.size());
    ++n;
  }
  if (n) UpdateGauge();
  return n;
}

std::vector<Gap> Gaps::Unhealed(const Ulid& from, const Ulid& to) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Gap> out;
  for (const auto& [key, gap] : gaps_) {
    if (gap.low > to) break;  // ordered by low
    if (!gap.healed && gap.high >= from) out.push_back(gap);
  }
  return out;
}

size_t Gaps::DropBelow(const Ulid& floor) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (auto it = gaps_.begin(); it != gaps_.end() && it->first.first < floor;) {
    if (it->second.high < floor) {
      AppendLine("- " + Range(it->second.low, it->second.high) + "\n");
      it = gaps_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  if (n) UpdateGauge();
  return n;
}

size_t Gaps::unhealed() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [key, gap] : gaps_) n += gap.healed ? 0 : 1;
  return n;
}

}  // namespace oklog

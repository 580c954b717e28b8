#include "segments/record_merge.h"

#include <algorithm>
#include <cstring>

#include "common/ulid.h"

namespace oklog {
namespace {

struct CanonTable {
  bool ok[256];
  constexpr CanonTable() : ok() {
    const char* a = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    for (int i = 0; i < 32; ++i) ok[static_cast<uint8_t>(a[i])] = true;
  }
};
constexpr CanonTable kCanon;

inline int CmpUlid(std::string_view a, std::string_view b) { return std::memcmp(a.data(), b.data(), Ulid::kTextSize); }

}  // namespace

bool IsCanonicalUlid(const char* p) {
  if (p[0] > '7') return false;
  for (size_t i = 0; i < Ulid::kTextSize; ++i)
    if (!kCanon.ok[static_cast<uint8_t>(p[i])]) return false;
  return true;
}

std::vector<std::string_view> ParseRecords(std::string_view buf, ParseStats* stats) {
  std::vector<std::string_view> out;
  out.reserve(buf.size() / 100 + 1);
  const char* p = buf.data();
  const char* end = p + buf.size();
  while (p < end) {
    const char* lf = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (!lf) {
      ++stats->invalid;  // torn tail
      break;
    }
    size_t len = static_cast<size_t>(lf - p) + 1;
    // ULID SP topic SP ... LF, with a non-empty topic: the store segment grammar.
    const char* topic = p + Ulid::kTextSize + 1;
    const char* sp = len >= Ulid::kTextSize + 3 ? static_cast<const char*>(std::memchr(topic, ' ', static_cast<size_t>(lf - topic))) : nullptr;
    if (sp && sp > topic && p[Ulid::kTextSize] == ' ' && IsCanonicalUlid(p)) {
      out.emplace_back(p, len);
      ++stats->records;
    } else {
      ++stats->invalid;
    }
    p = lf + 1;
  }
  return out;
}

bool SortRecords(std::vector<std::string_view>* run) {
  auto less = [](std::string_view a, std::string_view b) { return CmpUlid(a, b) < 0; };
  if (std::is_sorted(run->begin(), run->end(), less)) return false;
  std::stable_sort(run->begin(), run->end(), less);
  return true;
}

uint64_t MergeRuns(const std::vector<std::vector<std::string_view>>& runs,
                   const std::function<bool(std::string_view)>& emit) {
  MergeByUlid merge;
  std::vector<size_t> next(runs.size(), 0);  // per run: index of the head after the offered one
  for (size_t i = 0; i < runs.size(); ++i)
    if (!runs[i].empty()) {
      merge.Offer(i, runs[i][0]);
      next[i] = 1;
    }
  while (!merge.empty()) {
    size_t run = merge.Pop().source;
    std::string_view r = runs[run][next[run] - 1];
    if (next[run] < runs[run].size()) merge.Offer(run, runs[run][next[run]++]);
    if (merge.Accept(r) && !emit(r)) break;
  }
  return merge.duplicates();
}

MergedRecords MergeBuffers(const std::vector<std::string_view>& buffers) {
  MergedRecords out;
  std::vector<std::vector<std::string_view>> runs;
  ParseStats ps;
  for (std::string_view b : buffers) {
    runs.push_back(ParseRecords(b, &ps));
    SortRecords(&runs.back());
  }
  out.invalid = ps.invalid;
  out.records.reserve(ps.records);
  out.duplicates = MergeRuns(runs, [&](std::string_view rec) {
    out.records.push_back(rec);
    out.bytes += rec.size();
    return true;
  });
  return out;
}

}  // namespace oklog

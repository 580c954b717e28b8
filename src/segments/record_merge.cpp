#include "segments/record_merge.h"

#include <algorithm>
#include <cstring>
#include <queue>

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
  uint64_t dups = 0;
  const char* last = nullptr;  // ULID of the last emitted record
  auto dup = [&](std::string_view r) { return last && std::memcmp(last, r.data(), Ulid::kTextSize) == 0; };
  if (runs.size() == 1) {
    for (std::string_view r : runs[0]) {
      if (dup(r)) {
        ++dups;
        continue;
      }
      last = r.data();
      if (!emit(r)) return dups;
    }
    return dups;
  }
  using Head = std::pair<size_t, size_t>;  // run, index
  auto greater = [&](const Head& a, const Head& b) {
    int c = CmpUlid(runs[a.first][a.second], runs[b.first][b.second]);
    return c != 0 ? c > 0 : a.first > b.first;
  };
  std::priority_queue<Head, std::vector<Head>, decltype(greater)> heap(greater);
  for (size_t i = 0; i < runs.size(); ++i)
    if (!runs[i].empty()) heap.push({i, 0});
  while (!heap.empty()) {
    Head h = heap.top();
    heap.pop();
    std::string_view r = runs[h.first][h.second];
    if (h.second + 1 < runs[h.first].size()) heap.push({h.first, h.second + 1});
    if (dup(r)) {
      ++dups;
      continue;
    }
    last = r.data();
    if (!emit(r)) return dups;
  }
  return dups;
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

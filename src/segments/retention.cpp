#include "segments/retention.h"

#include <algorithm>

#include "common/log.h"

namespace oklog {
namespace {


std::string BaseName(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

int64_t ToUnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

Retention::Retention(StoreLog* store, RetentionOptions options, Registry* m)
    : store_(store), options_(std::move(options)), trash_dir_(store->dir() + "/trash") {
  auto* trashed = m->NewCounterFamily("oklog_store_trashed_segments",
                                      "Segments moved to the trash by retention (age or size).", {"success"});
  auto* purged = m->NewCounterFamily("oklog_store_purged_segments", "Trashed segments deleted after the purge delay.",
                                     {"success"});
  trashed_ok_ = trashed->With({"true"});
  trashed_failed_ = trashed->With({"false"});
  purged_ok_ = purged->With({"true"});
  purged_failed_ = purged->With({"false"});
}

std::chrono::system_clock::time_point Retention::Now() const {
  return options_.clock ? options_.clock() : std::chrono::system_clock::now();
}

size_t Retention::FirstLiveBlock(const SegmentReader& seg, uint64_t cutoff_ms) {
  const auto& blocks = seg.blocks();
  size_t i = 0;
  while (i < blocks.size() && blocks[i].last.unix_ms() < cutoff_ms) ++i;
  return i;
}

RetentionPlan Retention::Decide() const {
  RetentionPlan plan;
  const auto segments = store_->All();  // sorted by low: oldest first
  const int64_t now_ms = ToUnixMs(Now());
  const int64_t retain_ms = options_.retain.count();
  uint64_t age_cutoff = 0;
  if (retain_ms > 0 && now_ms > retain_ms) age_cutoff = static_cast<uint64_t>(now_ms - retain_ms);
  // Size: the newest blocks (by their newest record) are kept while they fit in max_bytes, each
  // weighing its share of its file (index and filters included); the others expire like blocks
  // past the age cutoff. The newest block is always kept, even alone over the limit.
  uint64_t size_cutoff = 0;
  if (options_.max_bytes > 0) {
    struct Weighed {
      uint64_t last_ms;
      double bytes;
    };
    std::vector<Weighed> blocks;
    double total = 0;
    for (const auto& seg : segments) {
      const auto& bs = seg->blocks();
      uint64_t compressed = 0;
      for (const auto& b : bs) compressed += b.compressed_size;
      const double scale = compressed ? static_cast<double>(seg->file_bytes()) / static_cast<double>(compressed) : 0;
      for (size_t b = age_cutoff ? FirstLiveBlock(*seg, age_cutoff) : 0; b < bs.size(); ++b) {
        blocks.push_back({bs[b].last.unix_ms(), static_cast<double>(bs[b].compressed_size) * scale});
        total += blocks.back().bytes;
      }
    }
    if (total > static_cast<double>(options_.max_bytes)) {
      std::sort(blocks.begin(), blocks.end(), [](const Weighed& a, const Weighed& b) { return a.last_ms > b.last_ms; });
      double kept = 0;
      for (size_t k = 0; k < blocks.size(); ++k) {
        if (k > 0 && kept + blocks[k].bytes > static_cast<double>(options_.max_bytes)) {
          size_cutoff = blocks[k].last_ms + 1;
          break;
        }
        kept += blocks[k].bytes;
      }
    }
  }
  const bool size_binds = size_cutoff > age_cutoff;
  plan.cutoff_ms = std::max(age_cutoff, size_cutoff);
  for (const auto& seg : segments) {
    if (plan.cutoff_ms == 0) continue;
    size_t live = FirstLiveBlock(*seg, plan.cutoff_ms);
    if (live == seg->blocks().size()) {
      plan.trash.push_back(seg);
      continue;
    }
    if (live == 0) continue;
    // Over the size limit, the leading blocks go now; past the age only, when that saves enough.
    uint64_t expired = 0;
    for (size_t b = 0; b < live; ++b) expired += seg->blocks()[b].compressed_size;
    if (size_binds ||
        static_cast<double>(expired) >= options_.min_rewrite_fraction * static_cast<double>(seg->file_bytes()))
      plan.rewrite.push_back(seg);
  }
  return plan;
}

size_t Retention::Trash(const std::vector<std::shared_ptr<const SegmentReader>>& segments) {
  if (segments.empty()) return 0;
  auto logger = Logger("store");
  Env* env = store_->env();
  (void)env->CreateDirs(trash_dir_);  // a failure shows in the renames below
  // The trash clock, at millisecond resolution as before the Env seam.
  const auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(ToUnixMs(Now())));
  size_t n = 0;
  for (const auto& seg : segments) {
    // Out of the query set first: from here on no new query reads it.
    Status s = store_->Swap({seg}, {});
    std::string to = trash_dir_ + "/" + BaseName(seg->path());
    if (s.ok()) s = env->RenameFile(seg->path(), to);
    if (s.ok()) s = env->SetModifiedTime(to, now);
    if (!s.ok()) {
      trashed_failed_->Inc();
      logger->error("trashing segment file={} failed: {}", seg->path(), s.ToString());
      continue;
    }
    trashed_ok_->Inc();
    ++n;
    logger->info("trashed segment file={} range={}..{} bytes={}", seg->path(), seg->low().ToString(),
                 seg->high().ToString(), seg->file_bytes());
  }
  (void)env->SyncDir(trash_dir_);  // best effort: start-up recovery and the next round handle a lost rename or unlink
  (void)env->SyncDir(store_->dir());  // best effort: start-up recovery and the next round handle a lost rename or unlink
  return n;
}

size_t Retention::Purge() {
  Env* env = store_->env();
  std::vector<std::string> names;
  if (!env->GetChildren(trash_dir_, &names).ok()) return 0;
  const int64_t now_ms = ToUnixMs(Now());
  const int64_t purge_ms = options_.purge.count();
  size_t n = 0;
  for (const auto& name : names) {
    std::string path = trash_dir_ + "/" + name;
    Result<FileInfo> info = env->GetFileInfo(path);
    if (!info.ok() || !info->regular) continue;
    const int64_t trashed_ms = ToUnixMs(info->mtime);
    if (now_ms - trashed_ms < purge_ms) continue;
    if (Status s = env->RemoveFile(path); !s.ok()) {
      purged_failed_->Inc();
      Logger("store")->error("purging trashed file={} failed: {}", path, s.ToString());
      continue;
    }
    purged_ok_->Inc();
    ++n;
    Logger("store")->info("purged trashed segment file={}", path);
  }
  return n;
}

}  // namespace oklog

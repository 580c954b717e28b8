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
  if (retain_ms > 0 && now_ms > retain_ms) plan.cutoff_ms = static_cast<uint64_t>(now_ms - retain_ms);
  std::vector<bool> trashed(segments.size(), false);
  uint64_t kept_bytes = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const auto& seg = segments[i];
    if (plan.cutoff_ms == 0) {
      kept_bytes += seg->file_bytes();
      continue;
    }
    size_t live = FirstLiveBlock(*seg, plan.cutoff_ms);
    if (live == seg->blocks().size()) {
      trashed[i] = true;
      continue;
    }
    kept_bytes += seg->file_bytes();
    uint64_t expired = 0;
    for (size_t b = 0; b < live; ++b) expired += seg->blocks()[b].compressed_size;
    if (live > 0 && static_cast<double>(expired) >= options_.min_rewrite_fraction * static_cast<double>(seg->file_bytes()))
      plan.rewrite.push_back(seg);
  }
  // Size: the oldest segments go first, whole, until the rest fits.
  for (size_t i = 0; options_.max_bytes > 0 && kept_bytes > options_.max_bytes && i < segments.size(); ++i) {
    if (trashed[i]) continue;
    trashed[i] = true;
    kept_bytes -= segments[i]->file_bytes();
    plan.rewrite.erase(std::remove(plan.rewrite.begin(), plan.rewrite.end(), segments[i]), plan.rewrite.end());
  }
  for (size_t i = 0; i < segments.size(); ++i)
    if (trashed[i]) plan.trash.push_back(segments[i]);
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

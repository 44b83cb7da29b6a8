#include "core/StateMachine.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <cassert>
#include <limits>
#include <queue>
#include <set>
#include <stdexcept>
#include <tuple>

#include "codec/FrameError.h"
#include "codec/Packer.h"
#include "codec/StreamUnpacker.h"
#include "core/Text.h"

namespace replica {

struct StateMachine::User {
    std::string name;  // spelling as created
    std::string display;
    std::string password;
    bool passwordIsBin = false;  // replies give the hash back with the type it came in
    std::int64_t createdAt = 0;
    std::vector<std::int64_t> posts;  // ascending ids: appended in seq order
    std::map<std::int64_t, User*> followersBySince;
    std::map<std::int64_t, User*> followingBySince;
};

namespace {

constexpr std::size_t kMaxRidBytes = 64;

std::string error(std::string_view code, std::string_view msg) {
    std::string out;
    Packer p(out);
    p.mapHeader(3);
    p.kvBool("ok", false);
    p.kv("code", code);
    p.kv("msg", msg);
    return out;
}

std::string invalid(std::string_view msg) { return error("invalid", msg); }

std::string okEmpty() {
    std::string out;
    Packer p(out);
    p.mapHeader(1);
    p.kvBool("ok", true);
    return out;
}

// A string argument: present, str, valid UTF-8.
const msgpack::object* arg(const msgpack::object& a, std::string_view key) {
    return Body::find(a, key);
}

std::optional<std::string_view> strArg(const msgpack::object& a, std::string_view key) {
    const msgpack::object* o = arg(a, key);
    if (o == nullptr) return std::nullopt;
    auto s = asStr(*o);
    if (!s || !Text::codePoints(*s)) return std::nullopt;
    return s;
}

// A session or API token names the account it was issued for by that account's created_at
// (`actor_since`, optional): a name deleted and signed up for again is another account, and a
// write for the old one must not act as the new one.
bool otherAccount(std::int64_t createdAt, const msgpack::object& a) {
    const msgpack::object* since = arg(a, "actor_since");
    if (since == nullptr || since->type == msgpack::type::NIL) return false;
    auto v = asInt(*since);
    return !v || *v != createdAt;
}

std::string accountReplaced() {
    return error("account_replaced",
                 "the account this session or token was issued for was deleted");
}

// The acting user does not exist. With `actor_since` the request names the account its
// session or token was issued for, so that account was deleted: the credential is void.
std::string missingActor(const msgpack::object* a) {
    const msgpack::object* since = a != nullptr ? arg(*a, "actor_since") : nullptr;
    if (since != nullptr && since->type != msgpack::type::NIL) return accountReplaced();
    return error("not_found", "no such user");
}

// `limit` (1..200, default 50) and `before` (int, default none) of list queries.
bool pageArgs(const msgpack::object* a, std::int64_t& before, std::int64_t& limit,
              std::string& err) {
    before = std::numeric_limits<std::int64_t>::max();
    limit = 50;
    if (a == nullptr) return true;
    if (const msgpack::object* o = arg(*a, "before"); o && o->type != msgpack::type::NIL) {
        auto v = asInt(*o);
        if (!v) {
            err = invalid("before must be an integer");
            return false;
        }
        before = *v;
    }
    if (const msgpack::object* o = arg(*a, "limit"); o && o->type != msgpack::type::NIL) {
        auto v = asInt(*o);
        if (!v || *v < 1 || *v > 200) {
            err = invalid("limit must be an integer from 1 to 200");
            return false;
        }
        limit = *v;
    }
    return true;
}

// Hands `take` the entries of the sorted range [begin, end) newest first, at most limit + 1 of
// them: a page, plus one more that tells the caller whether a next page exists.
template <class It, class Take>
void newestFirst(It begin, It end, std::int64_t limit, Take take) {
    for (std::int64_t n = 0; end != begin && n <= limit; ++n) take(*--end);
}

}  // namespace

StateMachine::StateMachine() = default;
StateMachine::~StateMachine() = default;

StateMachine::User* StateMachine::findUser(std::string_view name) const {
    if (!Text::isUsername(name)) return nullptr;
    return userIndex_.find(name);
}

std::string_view StateMachine::applyBytes(std::string_view bodyBytes, const Limits& limits) {
    Body body = Body::decode(bodyBytes, limits);
    return apply(bodyBytes, body);
}

std::string_view StateMachine::apply(std::string_view bodyBytes, const Body& body) {
    // Read every frame-level field before changing anything, so a malformed frame is a no-op.
    // One pass over the root map instead of a lookup per key; a repeated key is resolved as
    // Body::find would (the first one wins).
    const msgpack::object *so = nullptr, *eo = nullptr, *tso = nullptr, *rido = nullptr,
                          *opo = nullptr, *args = nullptr;
    const msgpack::object& root = body.root();
    for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
        const msgpack::object_kv& kv = root.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) continue;
        const char* k = kv.key.via.str.ptr;
        const msgpack::object** slot = nullptr;
        switch (kv.key.via.str.size) {
            case 1:
                slot = k[0] == 's' ? &so : k[0] == 'e' ? &eo : k[0] == 'a' ? &args : nullptr;
                break;
            case 2:
                slot = k[0] == 't' && k[1] == 's'   ? &tso
                       : k[0] == 'o' && k[1] == 'p' ? &opo
                                                    : nullptr;
                break;
            case 3:
                if (k[0] == 'r' && k[1] == 'i' && k[2] == 'd') slot = &rido;
                break;
            default:
                break;
        }
        if (slot != nullptr && *slot == nullptr) *slot = &kv.val;
    }
    auto requireInt = [](const msgpack::object* o, const char* key) {
        auto v = o ? asInt(*o) : std::nullopt;
        if (!v) throw FrameError("malformed", std::string("missing or mistyped key '") + key + "'");
        return *v;
    };
    auto requireStr = [](const msgpack::object* o, const char* key) {
        auto v = o ? asStr(*o) : std::nullopt;
        if (!v) throw FrameError("malformed", std::string("missing or mistyped key '") + key + "'");
        return *v;
    };
    std::int64_t seq = requireInt(so, "s");
    std::int64_t epoch = requireInt(eo, "e");
    std::int64_t ts = requireInt(tso, "ts");
    std::string_view rid = requireStr(rido, "rid");
    std::string_view op = requireStr(opo, "op");
    if (rid.size() > kMaxRidBytes) throw FrameError("malformed", "rid longer than 64 bytes");
    if (seq != applied_ + 1) {
        throw std::logic_error("apply out of order: seq " + std::to_string(seq) + " after " +
                               std::to_string(applied_));
    }

    std::uint64_t ridHash = rid.empty() ? 0 : RidTable::hashOf(rid);
    const std::string* seen = rid.empty() ? nullptr : rids_.find(rid, ridHash);
    if (seen != nullptr) {
        reply_.assign(*seen);  // exactly once: a retry gets the first result
    } else {
        reply_.clear();
        applyOp(op, args, seq, ts);
        if (!rid.empty()) rids_.remember(rid, ridHash, reply_);
    }
    std::string_view reply = reply_;

    // One contiguous buffer and a one-shot hash: cheaper than a heap-allocated streaming state.
    std::string& chain = hashScratch_;
    chain.assign(reinterpret_cast<const char*>(digest_.data()), digest_.size());
    chain.append(bodyBytes).append(reply);
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits(chain.data(), chain.size()));
    std::copy(std::begin(canon.digest), std::end(canon.digest), digest_.begin());
    applied_ = seq;
    lastEpoch_ = epoch;
    return reply;
}

void StateMachine::applyOp(std::string_view op, const msgpack::object* args, std::int64_t seq,
                           std::int64_t ts) {
    if (args == nullptr || args->type != msgpack::type::MAP) return setReply(invalid("a must be a map"));
    const msgpack::object& a = *args;
    if (op == "create_post") return createPost(a, seq, ts);
    if (op == "create_user") return createUser(a, ts);
    if (op == "follow") return follow(a, seq, true);
    if (op == "unfollow") return follow(a, seq, false);
    if (op == "delete_post") return deletePost(a);
    if (op == "delete_user") return deleteUser(a);
    return setReply(invalid("unknown op"));
}

// ---------------------------------------------------------------- writes

void StateMachine::createUser(const msgpack::object& a, std::int64_t ts) {
    auto username = strArg(a, "username");
    if (!username || !Text::isUsername(*username))
        return setReply(invalid("username must be 3 to 20 of A-Z a-z 0-9 _"));
    const msgpack::object* pw = arg(a, "password_hash");
    bool pwBin = pw && pw->type == msgpack::type::BIN;
    if (pw == nullptr || !(pwBin || pw->type == msgpack::type::STR) || pw->via.str.size < 1 ||
        pw->via.str.size > 256 ||
        (!pwBin && !Text::codePoints(std::string_view(pw->via.str.ptr, pw->via.str.size))))
        return setReply(invalid("password_hash must be 1 to 256 bytes"));
    std::string display(*username);
    if (const msgpack::object* d = arg(a, "display_name"); d && d->type != msgpack::type::NIL) {
        auto s = asStr(*d);
        auto n = s ? Text::codePoints(*s) : std::nullopt;
        if (!n || *n > 50) return setReply(invalid("display_name must be at most 50 characters"));
        display = std::string(*s);
    }
    std::string key = Text::lower(*username);
    if (users_.count(key)) return setReply(error("conflict", "username taken"));
    auto user = std::make_unique<User>();
    user->name = std::string(*username);
    user->display = std::move(display);
    user->password.assign(pw->via.str.ptr, pw->via.str.size);  // bin and str share the layout
    user->passwordIsBin = pwBin;
    user->createdAt = ts;
    User* u = user.get();
    users_.emplace(std::move(key), std::move(user));
    userIndex_.insert(u->name, u);

    Packer p(reply_);
    p.mapHeader(2);
    p.kvBool("ok", true);
    p.str("user");
    p.mapHeader(6);
    p.kv("username", u->name);
    p.kv("display_name", u->display);
    p.kv("created_at", u->createdAt);
    p.kv("followers", std::int64_t(0));
    p.kv("following", std::int64_t(0));
    p.kv("posts", std::int64_t(0));
}

void StateMachine::deleteUser(const msgpack::object& a) {
    auto actor = strArg(a, "actor");
    if (!actor) return setReply(invalid("actor must be a string"));
    User* u = findUser(*actor);
    if (u == nullptr) return setReply(missingActor(&a));
    if (otherAccount(u->createdAt, a)) return setReply(accountReplaced());
    // Copy the edge lists first: removeFollow edits them.
    std::vector<User*> followers, following;
    for (auto& [since, f] : u->followersBySince) followers.push_back(f);
    for (auto& [since, f] : u->followingBySince) following.push_back(f);
    for (User* f : followers) removeFollow(f, u);
    for (User* f : following) removeFollow(u, f);
    std::vector<std::int64_t> ids = u->posts;
    for (std::int64_t id : ids) removePost(id);
    userIndex_.erase(u->name);
    users_.erase(Text::lower(u->name));
    return setReply(okEmpty());
}

void StateMachine::createPost(const msgpack::object& a, std::int64_t seq,
                                     std::int64_t ts) {
    auto actor = strArg(a, "actor");
    if (!actor) return setReply(invalid("actor must be a string"));
    const msgpack::object* t = arg(a, "text");
    auto raw = t ? asStr(*t) : std::nullopt;
    if (!raw || !Text::codePoints(*raw)) return setReply(invalid("text must be a UTF-8 string"));
    std::string_view text = Text::trim(*raw);
    std::size_t n = *Text::codePoints(text);
    if (n < 1 || n > 280) return setReply(invalid("text must be 1 to 280 characters"));
    User* u = findUser(*actor);
    if (u == nullptr) return setReply(missingActor(&a));
    if (otherAccount(u->createdAt, a)) return setReply(accountReplaced());
    assert(u->posts.empty() || u->posts.back() < seq);  // ids grow with seq
    assert(posts_.empty() || posts_.rbegin()->first < seq);
    // Ids grow with seq, so the new post goes at the end: the hint makes the insert O(1).
    auto it = posts_.emplace_hint(posts_.end(), std::piecewise_construct, std::forward_as_tuple(seq),
                                  std::forward_as_tuple());
    Post* pp = &it->second;
    pp->id = seq;
    pp->author = u;
    pp->text.assign(text.data(), text.size());
    pp->createdAt = ts;
    u->posts.push_back(seq);

    // {"ok":true,"post":{"id","author","text","created_at","seq"}} written in place: the
    // same bytes as Packer's member calls, one buffer resize instead of an append per field.
    static const std::string kHead = [] {
        std::string h;
        Packer p(h);
        p.mapHeader(2);
        p.kvBool("ok", true);
        p.str("post");
        p.mapHeader(5);
        p.str("id");
        return h;
    }();
    std::size_t at = reply_.size();
    reply_.resize(at + kHead.size() + 3 * Packer::kMaxInt + 4 * Packer::kMaxHeader + 21 +
                  u->name.size() + pp->text.size());
    char* w = &reply_[at];
    std::memcpy(w, kHead.data(), kHead.size());
    w += kHead.size();
    w = Packer::putInt(w, pp->id);
    w = Packer::putStr(w, "author");
    w = Packer::putStr(w, u->name);
    w = Packer::putStr(w, "text");
    w = Packer::putStr(w, pp->text);
    w = Packer::putStr(w, "created_at");
    w = Packer::putInt(w, pp->createdAt);
    w = Packer::putStr(w, "seq");
    w = Packer::putInt(w, pp->id);
    reply_.resize(std::size_t(w - reply_.data()));
}

void StateMachine::removePost(std::int64_t id) {
    auto it = posts_.find(id);
    assert(it != posts_.end());
    auto& list = it->second.author->posts;
    list.erase(std::lower_bound(list.begin(), list.end(), id));
    posts_.erase(it);
}

void StateMachine::deletePost(const msgpack::object& a) {
    auto actor = strArg(a, "actor");
    if (!actor) return setReply(invalid("actor must be a string"));
    const msgpack::object* ido = arg(a, "id");
    auto id = ido ? asInt(*ido) : std::nullopt;
    if (!id) return setReply(invalid("id must be an integer"));
    User* u = findUser(*actor);
    if (u == nullptr) return setReply(missingActor(&a));
    if (otherAccount(u->createdAt, a)) return setReply(accountReplaced());
    auto it = posts_.find(*id);
    if (it == posts_.end()) return setReply(error("not_found", "no such post"));
    if (it->second.author != u) return setReply(error("forbidden", "not the author"));
    removePost(*id);
    return setReply(okEmpty());
}

void StateMachine::addFollow(User* from, User* to, std::int64_t since) {
    edges_.insert(from, to, since);
    // Since is the seq of the follow, larger than every since before it: insert at the end.
    from->followingBySince.emplace_hint(from->followingBySince.end(), since, to);
    to->followersBySince.emplace_hint(to->followersBySince.end(), since, from);
    ++follows_;
}

void StateMachine::removeFollow(User* from, User* to) {
    const std::int64_t* found = edges_.find(from, to);
    assert(found != nullptr);
    std::int64_t since = *found;
    edges_.erase(from, to);
    from->followingBySince.erase(since);
    to->followersBySince.erase(since);
    --follows_;
}

void StateMachine::follow(const msgpack::object& a, std::int64_t seq, bool on) {
    auto actor = strArg(a, "actor");
    if (!actor) return setReply(invalid("actor must be a string"));
    auto target = strArg(a, "target");
    if (!target) return setReply(invalid("target must be a string"));
    User* from = findUser(*actor);
    if (from == nullptr) return setReply(missingActor(&a));
    if (otherAccount(from->createdAt, a)) return setReply(accountReplaced());
    User* to = findUser(*target);
    if (to == nullptr) return setReply(error("not_found", "no such target user"));
    if (from == to) return setReply(error("forbidden", "cannot follow yourself"));
    bool exists = edges_.contains(from, to);
    bool changed = on != exists;
    if (changed) {
        if (on)
            addFollow(from, to, seq);
        else
            removeFollow(from, to);
    }
    static const std::string kReplies[2] = {
        [] {
            std::string r;
            Packer p(r);
            p.mapHeader(2);
            p.kvBool("ok", true);
            p.kvBool("changed", false);
            return r;
        }(),
        [] {
            std::string r;
            Packer p(r);
            p.mapHeader(2);
            p.kvBool("ok", true);
            p.kvBool("changed", true);
            return r;
        }()};
    reply_.assign(kReplies[changed]);
}

// ---------------------------------------------------------------- reads

namespace {

void packPostList(Packer& p, std::string_view key, std::size_t n) {
    p.str(key);
    p.arrayHeader(std::uint32_t(n));
}

}  // namespace

std::string StateMachine::query(std::string_view q, const msgpack::object* args) const {
    if (args != nullptr && args->type == msgpack::type::NIL) args = nullptr;
    if (args != nullptr && args->type != msgpack::type::MAP) return invalid("a must be a map");
    std::string out;
    Packer p(out);
    auto packUser = [&](const User* u, bool withPassword) {
        p.mapHeader(withPassword ? 7 : 6);
        p.kv("username", u->name);
        p.kv("display_name", u->display);
        p.kv("created_at", u->createdAt);
        p.kv("followers", std::int64_t(u->followersBySince.size()));
        p.kv("following", std::int64_t(u->followingBySince.size()));
        p.kv("posts", std::int64_t(u->posts.size()));
        if (withPassword) {
            p.str("password_hash");
            if (u->passwordIsBin)
                p.bin(u->password);
            else
                p.str(u->password);
        }
    };
    auto packPost = [&](const Post* post) {
        p.mapHeader(5);
        p.kv("id", post->id);
        p.kv("author", post->author->name);
        p.kv("text", post->text);
        p.kv("created_at", post->createdAt);
        p.kv("seq", post->id);
    };
    // Emits {"ok":true,"posts":[...],"next":..} from ids newest first; `ids` holds up to
    // limit+1 entries, the extra one only telling that a next page exists.
    auto packPage = [&](std::vector<std::int64_t>& ids, std::int64_t limit) {
        bool more = std::int64_t(ids.size()) > limit;
        if (more) ids.resize(std::size_t(limit));
        p.mapHeader(3);
        p.kvBool("ok", true);
        packPostList(p, "posts", ids.size());
        for (std::int64_t id : ids) packPost(&posts_.at(id));
        p.str("next");
        if (more)
            p.integer(ids.back());
        else
            p.nil();
    };
    // `asActor`: the query is made for the session's or token's own account (home).
    auto userArg = [&](const User*& u, bool asActor = false) -> bool {
        auto name = args ? strArg(*args, "username") : std::nullopt;
        if (!name) {
            out = invalid("username must be a string");
            return false;
        }
        u = findUser(*name);
        if (u == nullptr) {
            out = asActor ? missingActor(args) : error("not_found", "no such user");
            return false;
        }
        return true;
    };
    std::int64_t before, limit;
    std::string err;

    if (q == "user") {
        const User* u;
        if (!userArg(u)) return out;
        p.mapHeader(2);
        p.kvBool("ok", true);
        p.str("user");
        packUser(u, true);
        return out;
    }
    if (q == "user_posts" || q == "home") {
        if (!pageArgs(args, before, limit, err)) return err;
        const User* u;
        if (!userArg(u, q == "home")) return out;
        // A home timeline is read for the session's or token's own account (`actor_since`).
        if (q == "home" && otherAccount(u->createdAt, *args)) return accountReplaced();
        std::vector<std::int64_t> ids;
        if (q == "user_posts") {
            newestFirst(u->posts.begin(), std::lower_bound(u->posts.begin(), u->posts.end(), before),
                        limit, [&](std::int64_t id) { ids.push_back(id); });
        } else {
            // k-way merge of the per-user id lists (each ascending) with a max-heap of cursors:
            // O(k + limit log k) instead of scanning every followed user's whole history.
            struct Cursor {
                std::int64_t id;
                const std::vector<std::int64_t>* list;
                std::size_t pos;  // index of `id` in list
                bool operator<(const Cursor& o) const { return id < o.id; }
            };
            std::vector<Cursor> heap;
            heap.reserve(u->followingBySince.size() + 1);
            auto push = [&](const User* v) {
                auto end = std::lower_bound(v->posts.begin(), v->posts.end(), before);
                if (end == v->posts.begin()) return;
                std::size_t pos = std::size_t(end - v->posts.begin()) - 1;
                heap.push_back({v->posts[pos], &v->posts, pos});
            };
            push(u);
            for (auto& [since, v] : u->followingBySince) push(v);
            std::make_heap(heap.begin(), heap.end());
            while (!heap.empty() && std::int64_t(ids.size()) <= limit) {
                std::pop_heap(heap.begin(), heap.end());
                Cursor& c = heap.back();
                ids.push_back(c.id);
                if (c.pos == 0) {
                    heap.pop_back();
                } else {
                    --c.pos;
                    c.id = (*c.list)[c.pos];
                    std::push_heap(heap.begin(), heap.end());
                }
            }
        }
        packPage(ids, limit);
        return out;
    }
    if (q == "public") {
        if (!pageArgs(args, before, limit, err)) return err;
        std::vector<std::int64_t> ids;
        newestFirst(posts_.begin(), posts_.lower_bound(before), limit,
                    [&](const auto& post) { ids.push_back(post.first); });
        packPage(ids, limit);
        return out;
    }
    if (q == "followers" || q == "following") {
        if (!pageArgs(args, before, limit, err)) return err;
        const User* u;
        if (!userArg(u)) return out;
        const auto& edges = q == "followers" ? u->followersBySince : u->followingBySince;
        std::vector<std::pair<std::int64_t, const User*>> page;
        newestFirst(edges.begin(), edges.lower_bound(before), limit,
                    [&](const auto& edge) { page.emplace_back(edge.first, edge.second); });
        bool more = std::int64_t(page.size()) > limit;
        if (more) page.resize(std::size_t(limit));
        p.mapHeader(4);
        p.kvBool("ok", true);
        p.str("users");
        p.arrayHeader(std::uint32_t(page.size()));
        for (auto& [since, v] : page) {
            p.mapHeader(3);
            p.kv("username", v->name);
            p.kv("display_name", v->display);
            p.kv("since", since);
        }
        p.kv("total", std::int64_t(edges.size()));
        p.str("next");
        if (more)
            p.integer(page.back().first);
        else
            p.nil();
        return out;
    }
    if (q == "search") {
        if (!pageArgs(args, before, limit, err)) return err;
        auto prefix = args ? strArg(*args, "prefix") : std::optional<std::string_view>("");
        if (!prefix || *Text::codePoints(*prefix) > 20)
            return invalid("prefix must be a string of at most 20 characters");
        std::string key = Text::lower(*prefix);
        std::vector<const User*> found;
        for (auto it = users_.lower_bound(key);
             it != users_.end() && std::int64_t(found.size()) < limit &&
             it->first.compare(0, key.size(), key) == 0;
             ++it)
            found.push_back(it->second.get());
        p.mapHeader(2);
        p.kvBool("ok", true);
        p.str("users");
        p.arrayHeader(std::uint32_t(found.size()));
        for (const User* v : found) {
            p.mapHeader(2);
            p.kv("username", v->name);
            p.kv("display_name", v->display);
        }
        return out;
    }
    if (q == "relation") {
        auto actor = args ? strArg(*args, "actor") : std::nullopt;
        if (!actor) return invalid("actor must be a string");
        auto target = strArg(*args, "target");
        if (!target) return invalid("target must be a string");
        const User* from = findUser(*actor);
        if (from == nullptr) return missingActor(args);
        if (otherAccount(from->createdAt, *args)) return accountReplaced();
        const User* to = findUser(*target);
        if (to == nullptr) return error("not_found", "no such target user");
        p.mapHeader(3);
        p.kvBool("ok", true);
        p.kvBool("following", edges_.contains(from, to));
        p.kvBool("followed_by", edges_.contains(to, from));
        return out;
    }
    if (q == "state") {
        p.mapHeader(5);
        p.kvBool("ok", true);
        p.kv("users", std::int64_t(users_.size()));
        p.kv("posts", std::int64_t(posts_.size()));
        p.kv("follows", std::int64_t(follows_));
        p.kv("applied", applied_);
        return out;
    }
    return invalid("unknown query");
}

// ---------------------------------------------------------------- snapshot

// Layout: ["replica-snapshot", 1, applied, lastEpoch, digest(bin16), users, posts, follows, rids]
//   users   = [[name, display, password, passwordIsBin, createdAt], ...] by lower-case name
//   posts   = [[id, authorLowerName, text, createdAt], ...] by id
//   follows = [[fromLowerName, toLowerName, since], ...] by (from, since)
//   rids    = [[rid, reply(bin)], ...] oldest first
// Without meta (the fingerprint), only users, posts and follows are encoded.
// Encoded into a buffer handed to `sink` whenever it holds kSnapshotPiece bytes, between
// entries: it never grows past a piece plus one entry (bounded by the write limits), whatever
// the state's size.
void StateMachine::encodeState(bool withMeta, const ByteSink& sink) const {
    std::string buf;
    Packer p(buf);
    auto entryDone = [&] {
        if (buf.size() < kSnapshotPiece) return;
        sink(buf);
        buf.clear();  // keeps the capacity
    };
    if (withMeta) {
        p.arrayHeader(9);
        p.str("replica-snapshot");
        p.integer(1);
        p.integer(applied_);
        p.integer(lastEpoch_);
        p.bin(std::string_view(reinterpret_cast<const char*>(digest_.data()), digest_.size()));
    } else {
        p.arrayHeader(3);
    }
    p.arrayHeader(std::uint32_t(users_.size()));
    for (auto& [key, u] : users_) {
        p.arrayHeader(5);
        p.str(u->name);
        p.str(u->display);
        p.bin(u->password);
        p.boolean(u->passwordIsBin);
        p.integer(u->createdAt);
        entryDone();
    }
    p.arrayHeader(std::uint32_t(posts_.size()));
    for (auto& [id, post] : posts_) {
        p.arrayHeader(4);
        p.integer(id);
        p.str(Text::lower(post.author->name));
        p.str(post.text);
        p.integer(post.createdAt);
        entryDone();
    }
    p.arrayHeader(std::uint32_t(follows_));
    for (auto& [key, u] : users_) {
        for (auto& [since, to] : u->followingBySince) {
            p.arrayHeader(3);
            p.str(key);
            p.str(Text::lower(to->name));
            p.integer(since);
            entryDone();
        }
    }
    if (withMeta) {
        p.arrayHeader(std::uint32_t(rids_.size()));
        rids_.forEach([&](std::string_view rid, std::string_view reply) {
            p.arrayHeader(2);
            p.str(rid);
            p.bin(reply);
            entryDone();
        });
    }
    if (!buf.empty()) sink(buf);
}

std::string StateMachine::snapshot() const {
    std::string out;
    encodeState(true, [&](std::string_view piece) { out.append(piece); });
    return out;
}

void StateMachine::writeSnapshot(const ByteSink& sink) const { encodeState(true, sink); }

StateMachine::Digest StateMachine::stateFingerprint() const {
    // Streamed: the same bytes hashed as when they were encoded whole, without holding them.
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(), XXH3_freeState);
    XXH3_128bits_reset(st.get());
    encodeState(false, [&](std::string_view piece) {
        XXH3_128bits_update(st.get(), piece.data(), piece.size());
    });
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(st.get()));
    Digest d;
    std::copy(std::begin(canon.digest), std::end(canon.digest), d.begin());
    return d;
}

void StateMachine::clear() {
    posts_.clear();
    users_.clear();
    userIndex_.clear();
    edges_.clear();
    follows_ = 0;
    rids_.clear();
    applied_ = 0;
    lastEpoch_ = 0;
    digest_.fill(0);
}

void StateMachine::swap(StateMachine& other) noexcept {
    users_.swap(other.users_);
    userIndex_.swap(other.userIndex_);
    edges_.swap(other.edges_);
    posts_.swap(other.posts_);
    std::swap(follows_, other.follows_);
    rids_.swap(other.rids_);
    std::swap(applied_, other.applied_);
    std::swap(lastEpoch_, other.lastEpoch_);
    std::swap(digest_, other.digest_);
}

void StateMachine::restore(std::string_view bytes) {
    StreamUnpacker in(bytes);
    restoreFrom(in);
}

void StateMachine::restore(const ByteSource& source, std::uint64_t size) {
    StreamUnpacker in(source, size);
    restoreFrom(in);
}

namespace {

// The checks a snapshot's elements get, shared by restoreFrom and readPosition.
[[noreturn]] void badSnapshot(const char* why) {
    throw std::runtime_error(std::string("bad snapshot: ") + why);
}

std::int64_t snapshotInt(const msgpack::object& o) {
    auto v = asInt(o);
    if (!v) badSnapshot("integer expected");
    return *v;
}

std::string_view snapshotText(const msgpack::object& o) {
    if (o.type != msgpack::type::STR && o.type != msgpack::type::BIN) badSnapshot("string expected");
    return std::string_view(o.via.str.ptr, o.via.str.size);
}

// Nesting allowed in the whole snapshot, the root at depth 1 (msgpack-c counts so): a
// top-level element is at depth 2, an entry of a list at depth 3.
constexpr std::size_t kSnapshotDepth = 8;

}  // namespace

StateMachine::Position StateMachine::snapshotPosition(const ByteSource& source,
                                                     std::uint64_t size) {
    StreamUnpacker in(source, size);
    try {
        return readPosition(in);
    } catch (const msgpack::unpack_error& e) {
        throw std::runtime_error(std::string("bad snapshot: ") + e.what());
    }
}

StateMachine::Position StateMachine::readPosition(StreamUnpacker& in) {
    auto element = [&]() -> const msgpack::object& { return in.next(kSnapshotDepth - 1); };
    if (in.arrayHeader() != std::optional<std::uint32_t>(9)) badSnapshot("shape");
    if (snapshotText(element()) != "replica-snapshot" || snapshotInt(element()) != 1)
        badSnapshot("unknown format");
    Position at;
    at.applied = snapshotInt(element());
    at.lastEpoch = snapshotInt(element());
    std::string_view digest = snapshotText(element());
    if (digest.size() != at.digest.size()) badSnapshot("digest size");
    std::copy(digest.begin(), digest.end(), at.digest.begin());
    return at;
}

// Why entry by entry: msgpack::unpack of the whole snapshot built an object tree of the entire
// state (an object per field of every user, post, follow and request id, its strings copied),
// several times the payload, on top of the payload and the state being built. Here the nine
// top-level elements are read one after the other and the four lists one entry at a time; an
// entry's objects live until the next entry is read. The checks are those of a whole-tree
// decoding, with the same limits: a snapshot accepted before is accepted now, into the same state.
void StateMachine::restoreFrom(StreamUnpacker& in) {
    auto bad = badSnapshot;
    constexpr std::size_t kDepth = kSnapshotDepth;
    auto element = [&]() -> const msgpack::object& { return in.next(kDepth - 1); };
    auto entry = [&]() -> const msgpack::object& { return in.next(kDepth - 2); };
    auto list = [&](std::optional<std::uint32_t> n) {
        if (!n) bad("shape");
        return *n;
    };
    auto arr = [&](const msgpack::object& o, std::uint32_t n) -> const msgpack::object* {
        if (o.type != msgpack::type::ARRAY || (n != 0 && o.via.array.size != n)) bad("shape");
        return o.via.array.ptr;
    };
    auto integer = snapshotInt;
    auto string = [](const msgpack::object& o) { return std::string(snapshotText(o)); };
    try {
        const Position at = readPosition(in);
        clear();
        applied_ = at.applied;
        lastEpoch_ = at.lastEpoch;
        digest_ = at.digest;
        for (std::uint32_t i = 0, n = list(in.arrayHeader()); i < n; ++i) {
            const msgpack::object* u = arr(entry(), 5);
            auto user = std::make_unique<User>();
            user->name = string(u[0]);
            user->display = string(u[1]);
            user->password = string(u[2]);
            user->passwordIsBin = u[3].type == msgpack::type::BOOLEAN && u[3].via.boolean;
            user->createdAt = integer(u[4]);
            // apply() relies on these invariants; a damaged or hostile snapshot must not break them.
            if (!Text::isUsername(user->name)) bad("invalid username");
            User* raw = user.get();
            if (!users_.emplace(Text::lower(user->name), std::move(user)).second) bad("duplicate user");
            userIndex_.insert(raw->name, raw);
        }
        for (std::uint32_t i = 0, n = list(in.arrayHeader()); i < n; ++i) {
            const msgpack::object* e = arr(entry(), 4);
            Post post;
            post.id = integer(e[0]);
            // Ids ascend (each author's list stays sorted, as createPost asserts) and are seqs.
            if (post.id < 1 || post.id > applied_ || (!posts_.empty() && post.id <= posts_.rbegin()->first))
                bad("post ids must ascend within 1..applied");
            auto it = users_.find(string(e[1]));
            if (it == users_.end()) bad("post author missing");
            post.author = it->second.get();
            post.text = string(e[2]);
            post.createdAt = integer(e[3]);
            post.author->posts.push_back(post.id);  // posts come in id order
            std::int64_t id = post.id;
            posts_.emplace_hint(posts_.end(), id, std::move(post));
        }
        std::set<std::int64_t> followSince;  // a follow's since is its write's seq: unique
        for (std::uint32_t i = 0, n = list(in.arrayHeader()); i < n; ++i) {
            const msgpack::object* e = arr(entry(), 3);
            auto from = users_.find(string(e[0]));
            auto to = users_.find(string(e[1]));
            if (from == users_.end() || to == users_.end()) bad("follow edge user missing");
            std::int64_t since = integer(e[2]);
            if (from == to || edges_.contains(from->second.get(), to->second.get()) ||
                since < 1 || since > applied_ || !followSince.insert(since).second)
                bad("follow edge repeated, self-follow or bad since");
            addFollow(from->second.get(), to->second.get(), since);
        }
        for (std::uint32_t i = 0, n = list(in.arrayHeader()); i < n; ++i) {
            const msgpack::object* e = arr(entry(), 2);
            std::string rid = string(e[0]);
            if (rid.empty() || rid.size() > RidTable::kMaxRidBytes || rids_.find(rid)) bad("rid entry");
            rids_.remember(rid, string(e[1]));
        }
    } catch (const msgpack::unpack_error& e) {
        bad(e.what());
    }
}

}  // namespace replica

#include "server/Auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace replica {

std::string Auth::mac(std::string_view secret, std::string_view label,
                      std::string_view initiatorNonce, std::string_view acceptorNonce) {
    std::string msg;
    msg.reserve(label.size() + initiatorNonce.size() + acceptorNonce.size());
    msg.append(label).append(initiatorNonce).append(acceptorNonce);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    // HMAC() with an empty key is fine (insecure mode): OpenSSL accepts a zero-length key, but
    // needs a non-null pointer.
    static const unsigned char empty = 0;
    const void* key = secret.empty() ? &empty : static_cast<const void*>(secret.data());
    if (HMAC(EVP_sha256(), key, int(secret.size()),
             reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len) == nullptr)
        throw std::runtime_error("HMAC failed");
    return std::string(reinterpret_cast<char*>(out), len);
}

bool Auth::equal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Auth::nonce(std::size_t n) {
    std::string out(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), int(n)) != 1)
        throw std::runtime_error("RAND_bytes failed");
    return out;
}

}  // namespace replica

# shellcheck shell=bash
# A throwaway certificate authority for the TLS tests: a CA, server certificates for 127.0.0.1 /
# localhost signed by it, client certificates, and a second, unrelated CA (to show that a wrong CA
# is refused). Everything is generated with openssl into one directory, on the fly, each run.
#
#   source scripts/lib/certs.sh
#   certs_init "$dir"                 # $dir/ca.crt ca.key, $dir/other-ca.crt (an unrelated CA)
#   certs_server "$dir" postgres      # $dir/postgres.crt postgres.key (CN/SAN localhost, 127.0.0.1)
#   certs_client "$dir" logpipe       # $dir/logpipe-client.crt logpipe-client.key (CN=logpipe)
#
# Keys are unencrypted PEM (PKCS#8), mode 0600; certificates are valid for 2 days. Functions
# return non-zero on failure and print progress to stderr.

if [[ -n "${LOGPIPE_CERTS_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_CERTS_SH_LOADED=1

certs_log() { printf '[certs] %s\n' "$*" >&2; }

# certs_ca DIR NAME SUBJECT: a self-signed CA DIR/NAME.crt with key DIR/NAME.key.
certs_ca() {
    local dir=$1 name=$2 subject=$3
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -sha256 \
        -subj "$subject" -keyout "$dir/$name.key" -out "$dir/$name.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        >/dev/null 2>&1 || { certs_log "openssl could not create CA $name"; return 1; }
    chmod 600 "$dir/$name.key"
}

# certs_init DIR: the test CA and an unrelated one, once per directory.
certs_init() {
    local dir=$1
    command -v openssl >/dev/null 2>&1 || { certs_log "openssl is missing: apt-get install openssl"; return 1; }
    mkdir -p "$dir"
    [[ -s "$dir/ca.crt" && -s "$dir/other-ca.crt" ]] && return 0
    certs_ca "$dir" ca "/CN=logpipe test CA" || return 1
    certs_ca "$dir" other-ca "/CN=some other CA" || return 1
    certs_log "test CA in $dir"
}

# certs_sign DIR NAME SUBJECT EXTENSIONS: a key and a certificate signed by DIR/ca.
certs_sign() {
    local dir=$1 name=$2 subject=$3 extensions=$4
    openssl req -newkey rsa:2048 -nodes -subj "$subject" \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" >/dev/null 2>&1 &&
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 2 -sha256 -extfile <(printf '%s\n' "$extensions") \
            -out "$dir/$name.crt" >/dev/null 2>&1 ||
        { certs_log "openssl could not sign $name"; return 1; }
    rm -f "$dir/$name.csr"
    chmod 600 "$dir/$name.key"
}

# certs_server DIR NAME: DIR/NAME.crt and .key for a server on 127.0.0.1 (SAN localhost and
# 127.0.0.1, so both verify-full host names pass).
certs_server() {
    certs_sign "$1" "$2" "/CN=localhost" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth
keyUsage=digitalSignature,keyEncipherment"
}

# certs_client DIR USER: DIR/USER-client.crt and .key with CN=USER (PostgreSQL maps a client
# certificate to the role named by its CN).
certs_client() {
    certs_sign "$1" "$2-client" "/CN=$2" \
        "extendedKeyUsage=clientAuth
keyUsage=digitalSignature,keyEncipherment"
}

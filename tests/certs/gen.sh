#!/bin/sh
# Regenerates the mTLS test certificates (tests/mtls.rs). Valid 100 years; test use only.
set -e
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days $days \
  -subj "/CN=billpay test CA" -keyout ca-key.pem -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days $days \
  -subj "/CN=other CA" -keyout other-ca-key.pem -out other-ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # name subject extensions ca
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "$2" -keyout "$1-key.pem" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4-key.pem" -CAcreateserial \
    -days $days -out "$1.pem" -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}
leaf server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth" ca
leaf client "/CN=checkout/O=Example" "subjectAltName=URI:spiffe://example.org/ns/shop/sa/checkout
extendedKeyUsage=clientAuth" ca
leaf client-subject "/CN=ops/O=Example" "extendedKeyUsage=clientAuth" ca
# Ambiguous identities, refused in mtls mode: two URI SANs, two CNs, two CNs beside one URI SAN.
leaf client-two-uris "/CN=checkout/O=Example" "subjectAltName=URI:spiffe://example.org/ns/shop/sa/checkout,URI:spiffe://example.org/ns/web/sa/catalog
extendedKeyUsage=clientAuth" ca
leaf client-two-cns "/CN=ops/CN=checkout/O=Example" "extendedKeyUsage=clientAuth" ca
leaf client-uri-two-cns "/CN=ops/CN=checkout/O=Example" "subjectAltName=URI:spiffe://example.org/ns/shop/sa/checkout
extendedKeyUsage=clientAuth" ca
leaf stranger "/CN=checkout/O=Example" "subjectAltName=URI:spiffe://example.org/ns/shop/sa/checkout
extendedKeyUsage=clientAuth" other-ca
rm -f ./*.srl

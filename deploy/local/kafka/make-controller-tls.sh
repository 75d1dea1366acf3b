#!/usr/bin/env bash
# Controller-listener mTLS material for a single KRaft node (broker and controller share one identity).
set -euo pipefail
d=${1:?dir}; mkdir -p "$d"; cd "$d"; umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ubi-kafka-ca" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=ubi-kafka-controller" -keyout k.key -out c.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > ext.cnf
openssl x509 -req -in c.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile ext.cnf -out c.crt 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in k.key -out k8.key          # Kafka PEM keystores want PKCS#8
cat k8.key c.crt > controller.pem                           # key + cert chain in one PEM keystore
cp ca.crt truststore.pem
rm -f c.csr ext.cnf k.key k8.key ca.srl
shred -u ca.key 2>/dev/null || rm -f ca.key                 # no further certs needed: drop the CA key


#!/bin/sh
# MinIO: the project's bucket and the flows' own S3 user, allowed to read, write
# and list that bucket only, and the uploader (TAXI_S3_UPLOADER_USER /
# TAXI_S3_UPLOADER_PASSWORD, optional), allowed to put objects under incoming/
# only (the s3-setup one-shot of docker-compose.yml, run in MinIO's image,
# which ships `mc`). The root user (TAXI_S3_ROOT_USER / TAXI_S3_ROOT_PASSWORD)
# stays with MinIO and this script; the flows get AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY. Safe to re-run (a changed secret in .env replaces the
# user's). No secret is ever an argument of a command (`ps` would show it).
#
# UNVERIFIED on the machines this project is tested on: MinIO's image cannot be
# pulled there, so CI runs the SeaweedFS override (deploy/seaweedfs/), whose
# users are tested. Written against the mc of the pinned MinIO release.
set -eu
: "${TAXI_S3_ROOT_USER:?}" "${TAXI_S3_ROOT_PASSWORD:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
bucket=${TAXI_BUCKET:-taxi}

# The root alias from the environment rather than `mc alias set` arguments. The
# generated secrets are hex, so they need no URL-encoding here.
export MC_HOST_root="http://${TAXI_S3_ROOT_USER}:${TAXI_S3_ROOT_PASSWORD}@minio:9000"

mc mb --ignore-existing "root/$bucket"

# add_user USER SECRET POLICY DOCUMENT: the policy, then the user with it. The
# secret goes to mc on stdin (printf is the shell's own, not a process).
add_user() {
    policy_file="/tmp/$3.json"
    printf '%s\n' "$4" > "$policy_file"
    mc admin policy create root "$3" "$policy_file"
    rm -f "$policy_file"
    printf '%s\n' "$2" | mc admin user add root "$1"
    case "$(mc admin user info root "$1")" in
        *"$3"*) ;;
        *) mc admin policy attach root "$3" --user "$1" ;;
    esac
}

# Read/write/list on the bucket and its objects; nothing on any other bucket,
# no bucket creation, no admin API.
add_user "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "taxi-flows-$bucket" "{
  \"Version\": \"2012-10-17\",
  \"Statement\": [
    {\"Effect\": \"Allow\", \"Action\": [\"s3:ListBucket\", \"s3:GetBucketLocation\", \"s3:ListBucketMultipartUploads\"],
     \"Resource\": [\"arn:aws:s3:::$bucket\"]},
    {\"Effect\": \"Allow\", \"Action\": [\"s3:GetObject\", \"s3:PutObject\", \"s3:DeleteObject\",
                                      \"s3:AbortMultipartUpload\", \"s3:ListMultipartUploadParts\"],
     \"Resource\": [\"arn:aws:s3:::$bucket/*\"]}
  ]
}"
echo "bucket $bucket ready; MinIO user $AWS_ACCESS_KEY_ID may read, write and list it, nothing else"

# The uploader: new objects under incoming/ (single or multipart uploads), no
# reading, listing or deleting anything.
if [ -n "${TAXI_S3_UPLOADER_USER:-}${TAXI_S3_UPLOADER_PASSWORD:-}" ]; then
    : "${TAXI_S3_UPLOADER_USER:?set both TAXI_S3_UPLOADER_USER and TAXI_S3_UPLOADER_PASSWORD, or neither}"
    : "${TAXI_S3_UPLOADER_PASSWORD:?set both TAXI_S3_UPLOADER_USER and TAXI_S3_UPLOADER_PASSWORD, or neither}"
    add_user "$TAXI_S3_UPLOADER_USER" "$TAXI_S3_UPLOADER_PASSWORD" "taxi-uploader-$bucket" "{
  \"Version\": \"2012-10-17\",
  \"Statement\": [
    {\"Effect\": \"Allow\", \"Action\": [\"s3:PutObject\", \"s3:AbortMultipartUpload\", \"s3:ListMultipartUploadParts\"],
     \"Resource\": [\"arn:aws:s3:::$bucket/incoming/*\"]}
  ]
}"
    echo "MinIO user $TAXI_S3_UPLOADER_USER may put objects under $bucket/incoming/, nothing else"
fi

#!/bin/sh
# MinIO: the project's bucket and the flows' own S3 user, allowed to read, write
# and list that bucket only (the s3-setup one-shot of docker-compose.yml, run
# in MinIO's image, which ships `mc`). The root user (TAXI_S3_ROOT_USER /
# TAXI_S3_ROOT_PASSWORD) stays with MinIO and this script; the flows get
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Safe to re-run (a changed secret
# in .env replaces the user's).
#
# UNVERIFIED on the machines this project is tested on: MinIO's image cannot be
# pulled there, so CI runs the SeaweedFS override (deploy/seaweedfs/), whose
# users are tested. Written against the mc of the pinned MinIO release.
set -eu
: "${TAXI_S3_ROOT_USER:?}" "${TAXI_S3_ROOT_PASSWORD:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
bucket=${TAXI_BUCKET:-taxi}
policy="taxi-flows-$bucket"

# The root alias from the environment rather than `mc alias set` arguments. The
# generated secrets are hex, so they need no URL-encoding here.
export MC_HOST_root="http://${TAXI_S3_ROOT_USER}:${TAXI_S3_ROOT_PASSWORD}@minio:9000"

mc mb --ignore-existing "root/$bucket"

# Read/write/list on the bucket and its objects; nothing on any other bucket,
# no bucket creation, no admin API.
policy_file=/tmp/taxi-flows-policy.json
printf '%s\n' "{
  \"Version\": \"2012-10-17\",
  \"Statement\": [
    {\"Effect\": \"Allow\", \"Action\": [\"s3:ListBucket\", \"s3:GetBucketLocation\", \"s3:ListBucketMultipartUploads\"],
     \"Resource\": [\"arn:aws:s3:::$bucket\"]},
    {\"Effect\": \"Allow\", \"Action\": [\"s3:GetObject\", \"s3:PutObject\", \"s3:DeleteObject\",
                                      \"s3:AbortMultipartUpload\", \"s3:ListMultipartUploadParts\"],
     \"Resource\": [\"arn:aws:s3:::$bucket/*\"]}
  ]
}" > "$policy_file"
mc admin policy create root "$policy" "$policy_file"
rm -f "$policy_file"

# The secret is an argument of this short-lived process (mc takes no other way
# without a terminal); it lives inside this container only.
mc admin user add root "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
case "$(mc admin user info root "$AWS_ACCESS_KEY_ID")" in
    *"$policy"*) ;;
    *) mc admin policy attach root "$policy" --user "$AWS_ACCESS_KEY_ID" ;;
esac
echo "bucket $bucket ready; MinIO user $AWS_ACCESS_KEY_ID may read, write and list it, nothing else"

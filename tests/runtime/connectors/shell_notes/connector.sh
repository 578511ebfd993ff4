#!/bin/sh
# A connector written in POSIX shell: the run protocol needs no Python.
# START arrives as one JSON line on stdin. Settings arrive only as environment variables:
#   NOTES_ACCOUNT (identity value), NOTES_PREFIX (record key prefix), NOTES_COUNT (records).
IFS= read -r start || exit 2
account=${NOTES_ACCOUNT:?NOTES_ACCOUNT is not set}
prefix=${NOTES_PREFIX:-note}
count=${NOTES_COUNT:-3}

printf '{"type":"IDENTITY","claim":"notes_account","value":"%s"}\n' "$account"
case $start in
  *'"collection_mode":"identify"'*)
    printf '{"type":"DONE","status":"succeeded","records_emitted":0}\n'
    exit 0
    ;;
esac

printf '{"type":"PROGRESS","message":"listing notes","stream":"notes","count":0,"total":%d}\n' \
  "$count"
i=1
while [ "$i" -le "$count" ]; do
  day=$(printf '%02d' "$i")
  printf '{"type":"RECORD","stream":"notes","key":"%s-%d","data":{"id":"%s-%d",' \
    "$prefix" "$i" "$prefix" "$i"
  printf '"title":"note %d of %s","body":"written by %s","updated_at":"2024-01-%sT10:00:00Z"},' \
    "$i" "$account" "$account" "$day"
  printf '"emitted_at":"2024-02-01T00:00:00Z"}\n'
  i=$((i + 1))
done
printf '{"type":"STATE","stream":"notes","cursor":{"updated_at":"2024-01-%sT10:00:00Z"}}\n' \
  "$(printf '%02d' "$count")"
printf '{"type":"DONE","status":"succeeded","records_emitted":%d}\n' "$count"

cd /work/main
MM='import sys; sys.path.insert(0,"experiments"); from bench_train import matmul_peak; print(round(matmul_peak(),1))'
for cap in 32768 4096; do
  b=$(.venv/bin/python -c "$MM")
  s=$(date +%s.%N)
  ONEDNN_PRIMITIVE_CACHE_CAPACITY=$cap /usr/bin/time -v .venv/bin/xnas search --space movinet --no-retrain --no-progress --name cap$cap --runs-dir experiments/tunas/results/cache_search_32k > /tmp/cs/log$cap.txt 2> /tmp/cs/time$cap.txt
  e=$(date +%s.%N)
  a=$(.venv/bin/python -c "$MM")
  rss=$(grep "Maximum resident" /tmp/cs/time$cap.txt | awk '{print $NF}')
  echo "{\"capacity\": $cap, \"wall_s\": $(echo "$e - $s" | bc), \"matmul_before\": $b, \"matmul_after\": $a, \"max_rss_kb\": $rss}" >> experiments/tunas/results/cache_search_32k/wall.jsonl
done

echo "hello from $(hostname), PID $$, installed: $(cat /app/.installed | tr '\n' ' ')"

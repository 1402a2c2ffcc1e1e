"""RabbitMQ: the only package that imports aio-pika — connections, topology, confirmed publishing,
the corked writer, the least-privilege broker users."""

"""Marketing: consent per purpose and channel, the notifier and its message outbox, and
rules that turn unified order history into personal offers."""

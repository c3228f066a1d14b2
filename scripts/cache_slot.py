#!/usr/bin/env python3
"""Prints the key-value key of a user's candidate cache slot, as the service
computes it (crates/domain/src/candidates.rs, `candidates_key`): the first 8
bytes of SHA-256 of the user id, big-endian, modulo the slots (the
`cache_slots` variable: SPIN_VARIABLE_CACHE_SLOTS, or its default 65536).

    python3 scripts/cache_slot.py USER_ID      # candidates-slot:N
"""
import hashlib
import os
import sys

user_id = sys.argv[1]
slots = max(1, int(os.environ.get("SPIN_VARIABLE_CACHE_SLOTS", "65536")))
head = hashlib.sha256(user_id.encode()).digest()[:8]
print(f"candidates-slot:{int.from_bytes(head, 'big') % slots}")

"""finemo 0.41's files and verbs: export to its TSVs, import from them, collapse and intersect."""

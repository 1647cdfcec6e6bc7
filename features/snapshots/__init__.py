"""Point-in-time snapshots: the feature definitions, the counter packing, the SQL dialects, the query plan and
builders, the treatments after each snapshot, and an independent pandas reference."""

"""Pure domain: message states, encoding and segmentation, routing, ids, receipts. No framework imports."""

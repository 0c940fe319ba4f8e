SET search_path = evil
